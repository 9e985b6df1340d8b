from pathlib import Path

import pytest

from flops.config import ProjectConfig, merge_configs, parse_config, read_toml
from flops.errors import ConfigError


def test_defaults_are_the_embedded_run() -> None:
    config = parse_config({"repo": "x"})
    assert (config.rounds, config.learners, config.strategy, config.orchestrator) == (
        3,
        2,
        "fedavg",
        "local",
    )
    assert config.effective_min_fit == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"rounds": 0}, "'rounds': Input should be greater than or equal to 1"),
        ({"learners": -1}, "'learners': Input should be greater than or equal to 1"),
        ({"epochs": 3}, "unknown key 'epochs' (known keys: "),
        ({"resources": {"gpu": 1}}, "unknown key 'resources.gpu'"),
        ({"min_fit": 5, "learners": 2}, "min_fit (5) cannot exceed learners (2)"),
        ({"mode": "hierarchical"}, "mode 'hierarchical' needs clusters"),
        (
            {"clusters": [{"name": "a", "learners": 1}]},
            "clusters only applies to mode 'hierarchical'",
        ),
        (
            {"mode": "hierarchical", "clusters": [{"name": "Edge A", "learners": 1}]},
            "cluster name 'Edge A' must be",
        ),
        (
            {
                "mode": "hierarchical",
                "learners": 3,
                "clusters": [{"name": "a", "learners": 2}],
            },
            "learners (3) must be the clusters' sum (2)",
        ),
        (
            {
                "mode": "hierarchical",
                "min_fit": 3,
                "clusters": [
                    {"name": "a", "learners": 2},
                    {"name": "b", "learners": 2},
                ],
            },
            "min_fit (3) counts clusters in mode 'hierarchical'",
        ),
        (
            {
                "mode": "hierarchical",
                "clusters": [
                    {"name": "a", "learners": 2},
                    {"name": "a", "learners": 1},
                ],
            },
            "cluster names must differ: a, a",
        ),
        (
            {
                "mode": "hierarchical",
                "clusters": [{"name": "a", "learners": 1, "min_fit": 2}],
            },
            "cluster a: min_fit (2) cannot exceed its learners (1)",
        ),
        ({"resources": {"memory": "lots"}}, "memory 'lots' is not a size"),
        ({"data_tags": ["bad tag"]}, "data tag 'bad tag' must be"),
        ({"platforms": ["linux/s390x"]}, "'platforms.0'"),
    ],
)
def test_invalid_configs_say_what_is_wrong(
    data: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "flops.toml")
    assert "Invalid project config in flops.toml" in str(err.value)
    assert expected in str(err.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"rounds": 0, "learners": 0, "colour": "red"})
    text = str(err.value)
    assert (
        "'rounds'" in text and "'learners'" in text and "unknown key 'colour'" in text
    )


def test_memory_sizes() -> None:
    assert (
        ProjectConfig(resources={"memory": "512m"}).resources.memory_bytes()
        == 512 * 1024**2
    )  # type: ignore[arg-type]
    assert (
        ProjectConfig(resources={"memory": "2Gi"}).resources.memory_bytes()
        == 2 * 1024**3
    )  # type: ignore[arg-type]
    assert ProjectConfig(resources={"memory": "1000"}).resources.memory_bytes() == 1000  # type: ignore[arg-type]


def test_later_layers_win_and_tables_merge() -> None:
    merged = merge_configs(
        {"rounds": 5, "resources": {"cpu": 1, "memory": "1g"}},
        {"rounds": 2, "resources": {"cpu": 2}},
    )
    assert merged == {"rounds": 2, "resources": {"cpu": 2, "memory": "1g"}}


def test_read_toml_top_level_or_flops_table(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("rounds = 4\n")
    (tmp_path / "b.toml").write_text("[flops]\nrounds = 6\n")
    assert read_toml(tmp_path / "a.toml") == {"rounds": 4}
    assert read_toml(tmp_path / "b.toml") == {"rounds": 6}


def test_read_toml_reports_syntax_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("rounds = = 4\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_toml(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")


def test_hierarchical_learners_are_the_clusters_and_min_fit_counts_clusters() -> None:
    config = parse_config(
        {
            "mode": "hierarchical",
            "min_fit": 1,
            "clusters": [
                {"name": "edge-a", "learners": 2},
                {
                    "name": "edge-b",
                    "learners": 3,
                    "min_fit": 2,
                    "placement": {"labels": {"site": "b"}},
                },
            ],
        }
    )
    assert config.learners == 5
    assert (config.root_nodes, config.effective_min_fit) == (2, 1)
    assert config.effective_min_evaluate == 2
    cluster = config.cluster_config("edge-b")
    assert (cluster.learners, cluster.effective_min_fit) == (3, 2)
    assert cluster.effective_min_evaluate == 3 and not cluster.hierarchical
    assert config.cluster("edge-b").placement.labels == {"site": "b"}


def test_clusters_in_a_later_layer_replace_an_earlier_learners() -> None:
    repo = {"learners": 2, "rounds": 5}
    submitted = {"mode": "hierarchical", "clusters": [{"name": "a", "learners": 3}]}
    config = parse_config(merge_configs(repo, submitted))
    assert (config.learners, config.rounds) == (3, 5)
    both = merge_configs(repo, {**submitted, "learners": 2})
    with pytest.raises(ConfigError, match="must be the clusters' sum"):
        parse_config(both)

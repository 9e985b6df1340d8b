"""Hierarchical aggregation end to end: a root aggregator over two clusters, each
with its own SuperLink, aggregator and two learners, on the local orchestrator.

Real Flower at both tiers (the clusters' uplinks are SuperNodes of the root's
SuperLink, over TLS with node authentication), real MLflow, real git repos.
The same data (four partitions) and rounds as a classic job of four learners
must give the same accuracy, within 0.02.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.security.test_dropouts import finished, supernode_of
from tests.stack import Stack

pytestmark = pytest.mark.integration

ROUNDS = 3
CLUSTERS = {"edge-a": ["learner-0", "learner-1"], "edge-b": ["learner-2", "learner-3"]}
# A cluster of one learner loses all its learners as surely as one of two, with
# five fewer processes on a 2-core CI machine.
SMALL_CLUSTERS = {"edge-a": ["learner-0"], "edge-b": ["learner-1"]}


def hierarchical_config(
    path: Path,
    tag: str,
    extra: str = "",
    rounds: int = ROUNDS,
    clusters: dict[str, list[str]] = CLUSTERS,
) -> str:
    tables = "".join(
        f'[[clusters]]\nname = "{name}"\nlearners = {len(learners)}\n'
        for name, learners in clusters.items()
    )
    path.write_text(
        f'mode = "hierarchical"\nrounds = {rounds}\ndata_tags = ["{tag}"]\n'
        f"{extra}{tables}"
    )
    return str(path)


@pytest.fixture(scope="module")
def digits4(stack: Stack, digits_file: Path) -> str:
    """The digits in four learner partitions: one per learner of either job."""
    pushed = stack.flops(
        "data", "push", str(digits_file), "--tag", "digits4", "--partitions", "4"
    )
    assert pushed.returncode == 0, pushed.stderr
    return "digits4"


def final(mlflow_client: Any, run_id: str, key: str) -> float:
    history = mlflow_client.get_metric_history(run_id, key)
    return float(max(history, key=lambda m: m.step).value)


def children(mlflow_client: Any, run: Any) -> list[Any]:
    return list(
        mlflow_client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
        )
    )


def steps(mlflow_client: Any, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in mlflow_client.get_metric_history(run_id, key))


def test_two_clusters_train_as_well_as_four_classic_learners(
    stack: Stack, digits4: str, mlflow_client: Any, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "mnist", EXAMPLES / "mnist-sklearn")
    config = hierarchical_config(tmp_path / "flops.toml", digits4)
    result, project = stack.submit(str(repo), "--config", config)
    assert result.returncode == 0, result.stderr + result.stdout
    assert project["status"] == "succeeded", project["error"]
    root = mlflow_client.get_run(project["mlflow"]["run_id"])
    assert root.info.status == "FINISHED"
    for key in ("eval_accuracy", "eval_loss", "round_seconds", "bytes_received"):
        assert steps(mlflow_client, root.info.run_id, key) == [1, 2, 3], key
    # The root's nodes are the clusters: two models in per round, not four.
    assert final(mlflow_client, root.info.run_id, "learners_ok") == 2

    # One child run per cluster, its learners under it, every tier per round.
    clusters = {c.data.tags["flops.cluster"]: c for c in children(mlflow_client, root)}
    assert sorted(clusters) == sorted(CLUSTERS)
    for name, run in clusters.items():
        assert run.info.status == "FINISHED", name
        assert steps(mlflow_client, run.info.run_id, "eval_accuracy") == [1, 2, 3]
        assert final(mlflow_client, run.info.run_id, "learners_ok") == 2
        learners = {
            c.data.tags["flops.learner"]: c for c in children(mlflow_client, run)
        }
        assert sorted(learners) == CLUSTERS[name]
        for learner in learners.values():
            assert steps(mlflow_client, learner.info.run_id, "eval_accuracy") == [
                1,
                2,
                3,
            ]

    # Events name the cluster they come from.
    events = stack.events(project["id"])
    started = sorted(
        e["data"]["cluster"] for e in events if e["type"] == "cluster_started"
    )
    assert started == sorted(CLUSTERS)
    for name in CLUSTERS:
        rounds = [
            e["data"]["round"]
            for e in events
            if e["type"] == "round_finished" and e["data"].get("cluster") == name
        ]
        assert rounds == [1, 2, 3], name
    assert project["mlflow"]["model_version"]

    classic, twin = stack.submit(
        str(repo), "--rounds", str(ROUNDS), "--learners", "4", "--data-tag", digits4
    )
    assert classic.returncode == 0, classic.stderr + classic.stdout
    hierarchical_accuracy = final(mlflow_client, root.info.run_id, "eval_accuracy")
    classic_accuracy = final(mlflow_client, twin["mlflow"]["run_id"], "eval_accuracy")
    assert hierarchical_accuracy > 0.8
    assert abs(hierarchical_accuracy - classic_accuracy) <= 0.02, (
        hierarchical_accuracy,
        classic_accuracy,
    )


def test_a_cluster_that_loses_its_learners_is_reported_and_the_root_goes_on(
    stack: Stack, digits4: str, mlflow_client: Any, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "mnist", EXAMPLES / "mnist-sklearn")
    config = hierarchical_config(
        tmp_path / "flops.toml",
        digits4,
        "min_fit = 1\nmin_evaluate = 1\nround_timeout = 40.0\n",
        rounds=2,
        clusters=SMALL_CLUSTERS,
    )
    submitted = stack.flops("project", "submit", str(repo), "--config", config)
    assert submitted.returncode == 0, submitted.stderr
    project_id = submitted.stdout.strip()
    try:
        stack.wait_for(project_id, lambda p: p["progress"]["round"] >= 2, timeout=400)
        for learner in SMALL_CLUSTERS["edge-b"]:
            os.kill(supernode_of(learner)[0], signal.SIGKILL)
        project = finished(stack, project_id)
    finally:
        stack.flops("project", "cancel", project_id)
    assert project["status"] == "succeeded", project["error"]
    assert project["progress"]["round"] == 2
    assert sorted(project["progress"]["learners_lost"]) == SMALL_CLUSTERS["edge-b"]
    events = stack.events(project_id)
    lost = [e["data"] for e in events if e["type"] == "cluster_lost"]
    assert [e["cluster"] for e in lost] == ["edge-b"]
    failed = [e["data"] for e in events if e["type"] == "cluster_failed"]
    assert failed and {e["cluster"] for e in failed} == {"edge-b"}
    assert all(e["round"] == 2 for e in failed)
    # The root's last round went on with edge-a alone.
    root_id = project["mlflow"]["run_id"]
    history = mlflow_client.get_metric_history(root_id, "learners_ok")
    assert max(history, key=lambda m: m.step).value == 1
    assert final(mlflow_client, root_id, "eval_accuracy") > 0.5

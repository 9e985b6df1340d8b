"""Where a tenant may place its clusters: only where the operator allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from flops.config import parse_config
from flops.errors import LimitError
from flops_management.limits import check_config
from flops_management.settings import Settings

PLACED = {
    "mode": "hierarchical",
    "clusters": [
        {"name": "edge-a", "learners": 1, "placement": {"node": "control-plane"}},
        {"name": "edge-b", "learners": 1, "placement": {"labels": {"site": "b"}}},
    ],
}


def test_no_placement_is_allowed_unless_the_operator_says(tmp_path: Path) -> None:
    with pytest.raises(LimitError) as refused:
        check_config(parse_config(PLACED), Settings(home=tmp_path))
    text = str(refused.value)
    assert "cluster edge-a: placement.node 'control-plane' is not one" in text
    assert "FLOPS_PLACEMENT_NODES: none" in text
    assert "cluster edge-b: placement.labels site are not label keys" in text


def test_allowed_nodes_and_label_keys_pass(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, placement_nodes=["control-plane"], placement_label_keys=["site"]
    )
    check_config(parse_config(PLACED), settings)
    unplaced = {"mode": "hierarchical", "clusters": [{"name": "a", "learners": 2}]}
    check_config(parse_config(unplaced), Settings(home=tmp_path))


def test_an_orchestrators_cluster_must_be_one_the_operator_allows(
    tmp_path: Path,
) -> None:
    config = parse_config(
        {
            "mode": "hierarchical",
            "clusters": [
                {"name": "a", "learners": 1, "placement": {"cluster": "site-a"}},
                {"name": "b", "learners": 1, "placement": {"cluster": "site-b"}},
            ],
        }
    )
    with pytest.raises(LimitError) as refused:
        check_config(config, Settings(home=tmp_path, placement_clusters=["site-a"]))
    text = str(refused.value)
    assert "cluster b: placement.cluster 'site-b' is not one" in text
    assert "FLOPS_PLACEMENT_CLUSTERS: site-a" in text
    assert "cluster a:" not in text

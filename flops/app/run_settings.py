"""What the management service tells a Flower run, through Flower's own channels.

Run-wide settings travel in the run config (`[tool.flwr.app.config]` of the
generated app), per-learner settings in each SuperNode's `--node-config`. Both
hold TOML scalars only, so structured values are JSON strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flops.config import ProjectConfig

# run config keys
CONFIG = "flops-config"
PROJECT_NAME = "flops-project-name"
MLFLOW_TRACKING_URI = "flops-mlflow-tracking-uri"
MLFLOW_EXPERIMENT_ID = "flops-mlflow-experiment-id"
MLFLOW_RUN_ID = "flops-mlflow-run-id"
REQUIREMENTS = "flops-requirements"
POLL_INTERVAL = "flops-poll-interval"
CONNECT_TIMEOUT = "flops-connect-timeout"
# Hierarchical mode (set per run by the train stage): which tier this run is
# ("root", "cluster"; empty: classic), the cluster's name, and the relay socket
# its aggregator serves its uplink on.
TIER = "flops-tier"
CLUSTER = "flops-cluster"
RELAY = "flops-relay"
ROOT_TIER = "root"
CLUSTER_TIER = "cluster"

# node config keys
NODE_DATA_DIR = "flops-data-dir"
NODE_LEARNER = "flops-learner"
# A cluster's uplink (its node at the root SuperLink): the relay socket of the
# cluster's aggregator, which its tasks hand the root's messages to.
NODE_RELAY = "flops-relay"
# Flower's conventional node config, for Flower apps: this learner's partition,
# how many there are, and its local data (a folder per data tag of parquet files).
NODE_PARTITION_ID = "partition-id"
NODE_NUM_PARTITIONS = "num-partitions"
NODE_DATA_PATH = "data-path"

# message config keys
WANT_SIGNATURE = "flops-want-signature"
# The job's last evaluate: learners ship what they still log after replying.
FINAL_ROUND = "flops-final-round"
# reply record names
META_RECORD = "flops"
# What the user's own MLflow calls logged in the task (flops.worker.capture):
# `logged` (JSON), `artifacts` (tar.gz bytes), when there was any.
LOGGED_RECORD = "flops-logged"


@dataclass(frozen=True)
class RunSettings:
    config: ProjectConfig
    project_name: str
    tracking_uri: str
    experiment_id: str
    run_id: str
    requirements: tuple[str, ...]
    poll_interval: float
    # How long the first round waits for every learner before it starts with
    # those connected (if min_fit/min_evaluate allow).
    connect_timeout: float = 120.0
    tier: str = ""
    cluster: str = ""
    relay: str = ""

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> RunSettings:
        return cls(
            config=ProjectConfig.model_validate_json(str(run_config[CONFIG])),
            project_name=str(run_config[PROJECT_NAME]),
            tracking_uri=str(run_config[MLFLOW_TRACKING_URI]),
            experiment_id=str(run_config[MLFLOW_EXPERIMENT_ID]),
            run_id=str(run_config[MLFLOW_RUN_ID]),
            requirements=tuple(json.loads(str(run_config[REQUIREMENTS]))),
            poll_interval=float(run_config[POLL_INTERVAL]),
            connect_timeout=float(run_config.get(CONNECT_TIMEOUT, 120.0)),
            tier=str(run_config.get(TIER, "")),
            cluster=str(run_config.get(CLUSTER, "")),
            relay=str(run_config.get(RELAY, "")),
        )


def node_config_args(
    data_dir: Path, learner: str, partition_id: int = 0, num_partitions: int = 1
) -> str:
    """The value of `flower-supernode --node-config` for one learner."""
    return (
        f'{NODE_DATA_DIR}="{data_dir}" {NODE_LEARNER}="{learner}" '
        f"{NODE_PARTITION_ID}={partition_id} {NODE_NUM_PARTITIONS}={num_partitions} "
        f'{NODE_DATA_PATH}="{data_dir}"'
    )


def uplink_node_config(cluster: str, relay: str) -> str:
    """`--node-config` of a cluster's uplink: its name at the root, and the
    relay socket of the cluster's aggregator."""
    return f'{NODE_LEARNER}="{cluster}" {NODE_RELAY}="{relay}"'

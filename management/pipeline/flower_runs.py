"""Starting a job's Flower runs with the `flwr` CLI, and its clusters' plan.

A classic job is one Flower run on the job's SuperLink. A hierarchical job is
one run per cluster on the cluster's SuperLink (the cluster tier, whose
aggregator answers the root through its relay: flops.app.cluster), started
first, then the root's run. Each cluster's figures go to an MLflow run of its
own, a child of the job's, made here (the cluster logs into it; the service
closes it with the job if the cluster could not).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from flops import subprocesses
from flops.app import run_settings as keys
from flops.config import Cluster, ClusterPlacement, ProjectConfig
from flops.errors import TrainingError
from flops_management.orchestrators import Deployment, Placement
from flops_management.pipeline import augment as augment_mod
from flops_management.pipeline import tracking


def learner_clusters(config: ProjectConfig) -> list[Cluster]:
    """The cluster of each placed learner, by index (`learner-<i>`); [] when
    classic. Learners are numbered across clusters, so the data partitions are
    those of a classic job with as many learners."""
    return [cluster for cluster in config.clusters for _ in range(cluster.learners)]


def placement(wanted: ClusterPlacement) -> Placement:
    """A cluster's placement as the orchestrators read it (one that cannot
    honour it refuses it before anything starts)."""
    if wanted.node is not None:
        return Placement.on_node(wanted.node, wanted.cluster)
    if wanted.labels:
        return Placement.with_labels(wanted.labels)
    if wanted.cluster is not None:
        return Placement.in_cluster(wanted.cluster)
    return Placement()


def _flwr() -> str:
    beside = Path(sys.executable).parent / "flwr"
    return str(beside) if beside.exists() else subprocesses.which("flwr")


def flwr_run_args(flwr: str, app_dir: Path, overrides: Path) -> list[str]:
    return [
        flwr,
        "run",
        str(app_dir),
        "flops",
        "--run-config",
        str(overrides),
        "--format",
        "json",
    ]


def flwr_cli_config(address: str, root_certificates: Path | None) -> str:
    """The `flwr` CLI's config.toml: the SuperLink's Control API over TLS,
    checked against the CA (plaintext only with `dev_insecure_flower`)."""
    link: dict[str, str | bool] = {"address": address}
    if root_certificates is None:
        link["insecure"] = True
    else:
        link["root-certificates"] = str(root_certificates)
    return tomli_w.dumps({"superlink": {"default": "flops", "flops": link}})


def start_flower_run(
    address: str,
    root_certificates: Path | None,
    app_dir: Path,
    home: Path,
    overrides: dict[str, str],
) -> str:
    """`flwr run` of the app on the SuperLink at `address`; the run's id.
    `home`: the CLI's own folder for this SuperLink."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(flwr_cli_config(address, root_certificates))
    override_file = home / "run-config.toml"
    override_file.write_text(augment_mod.run_overrides(overrides))
    output = subprocesses.run(
        flwr_run_args(_flwr(), app_dir, override_file),
        env={**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"},
        timeout=120,
    )
    start, end = output.find("{"), output.rfind("}")
    payload = json.loads(output[start : end + 1]) if start >= 0 else {}
    if not payload.get("success"):
        raise TrainingError(
            f"Flower did not start the run on {address}:\n{output[-2000:]}"
        )
    return str(payload["run-id"])


@dataclass(frozen=True)
class JobRuns:
    """Where a job's runs log: the MLflow tracking server, experiment and the
    job's run; `app_dir`, the generated app; `cli_home`, the CLI's folders."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    app_dir: Path
    cli_home: Path


def start_cluster_runs(
    runs: JobRuns,
    deployment: Deployment,
    client: tracking.Tracking,
    mlflow_runs: dict[str, str],
) -> None:
    """Each cluster's MLflow run (a child of the job's) and Flower run on its
    SuperLink; `mlflow_runs` gets cluster name -> MLflow run id as each is
    made, so a failure part-way leaves none unknown to the job's teardown."""
    for name, endpoint in deployment.clusters.items():
        mlflow_runs[name] = client.start_run(
            runs.experiment_id,
            run_name=name,
            params={},
            tags={"mlflow.parentRunId": runs.run_id, "flops.cluster": name},
        )
        start_flower_run(
            endpoint.control_address,
            deployment.root_certificates,
            runs.app_dir,
            runs.cli_home / "clusters" / name,
            {
                keys.MLFLOW_TRACKING_URI: runs.tracking_uri,
                keys.MLFLOW_EXPERIMENT_ID: runs.experiment_id,
                keys.MLFLOW_RUN_ID: mlflow_runs[name],
                keys.TIER: keys.CLUSTER_TIER,
                keys.CLUSTER: name,
                keys.RELAY: endpoint.relay,
            },
        )


def start_root_run(runs: JobRuns, deployment: Deployment) -> str:
    """The job's (root's) Flower run; its id."""
    overrides = {
        keys.MLFLOW_TRACKING_URI: runs.tracking_uri,
        keys.MLFLOW_EXPERIMENT_ID: runs.experiment_id,
        keys.MLFLOW_RUN_ID: runs.run_id,
    }
    if deployment.clusters:
        overrides[keys.TIER] = keys.ROOT_TIER
    return start_flower_run(
        deployment.control_address,
        deployment.root_certificates,
        runs.app_dir,
        runs.cli_home,
        overrides,
    )

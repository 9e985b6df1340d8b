"""A job as Oakestra services, by pure functions: which actor each service
runs, with what arguments, variables, limits, placement and address.

Each SuperLink-bearing service (the root aggregator, each cluster's) has a
fixed round-robin address on Oakestra's overlay (`oakestra_sla.rr_ip`); its
learners dial it there, and so does the FLOps service for the Control API
(`flwr run`, node keys), which is why the service must reach the overlay (see
README, "Oakestra"). Oakestra has no secret store, so an actor's TLS files and
node key travel in its SLA's `environment` (`flops.actor_files`): the
aggregator gets the SuperLink's certificate and key, a learner the CA and its
own node key. A learner reads its data from the CSI volume the settings name,
in its own folder (`<mount>/<learner name>`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flops import actor_files
from flops.actor import DEFAULT_SUPERLINK_PORT
from flops.actor_commands import CA_FILE, SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE
from flops_management.orchestrators.base import (
    AGGREGATOR,
    UPLINK,
    ClusterSpec,
    DeploymentSpec,
    LearnerSpec,
    cluster_part,
)
from flops_management.orchestrators.docker_containers import BASE_ENVIRONMENT
from flops_management.orchestrators.local_commands import THREAD_VARIABLES
from flops_management.orchestrators.node_auth import NODE_KEY_FILE
from flops_management.orchestrators.oakestra_sla import (
    OakestraPlacement,
    ServicePlan,
    rr_ip,
)
from flops_management.orchestrators.topology import Placement, PlacementKind

# Inside an actor's container: where flops.actor writes the files it was handed.
FILES_DIR = "/tmp/flops-files"  # noqa: S108 - the container's own /tmp
DATA_MOUNT = "/data"


@dataclass(frozen=True)
class DataVolume:
    """The CSI volume learners read their data from (a folder per learner)."""

    volume_id: str
    csi_driver: str

    def entry(self) -> dict[str, str]:
        return {
            "volume_id": self.volume_id,
            "csi_driver": self.csi_driver,
            "mount_path": DATA_MOUNT,
        }


@dataclass(frozen=True)
class JobSecrets:
    """What the service hands each actor: the SuperLink's TLS files (ca.crt,
    superlink.crt, superlink.key) and each node's private key by name (a
    learner's, a cluster's uplink's); None: plaintext (a dev switch)."""

    superlink: Mapping[str, bytes]
    node_keys: Mapping[str, bytes]
    # Each node's public key (registered with its SuperLink), and the CA's
    # certificate as the service checks the SuperLinks against it.
    public_keys: Mapping[str, bytes]
    ca_file: Path


def service_name(spec: DeploymentSpec, component: str) -> str:
    """`aggregator`, `cluster<i>` (a cluster's aggregator), `learner<i>`:
    Oakestra names allow no user-given text."""
    if component == AGGREGATOR:
        return AGGREGATOR
    for index, cluster in enumerate(spec.clusters):
        if component == cluster_part(cluster.name, AGGREGATOR):
            return f"cluster{index}"
    names = [learner.name for learner in spec.learners]
    return f"learner{names.index(component)}"


def superlink_address(job_id: str, index: int) -> str:
    """Where the `index`-th SuperLink of the job (0: the root's, i+1: cluster
    i's) is dialled, by learners and by the service alike."""
    return f"{rr_ip(job_id, index)}:{DEFAULT_SUPERLINK_PORT}"


def superlink_hosts(spec: DeploymentSpec) -> list[str]:
    """Every address the job's SuperLink certificate must name: each
    SuperLink's overlay address, and loopback, where the executor beside it in
    its container dials it."""
    overlay = [rr_ip(spec.job_id, index) for index in range(len(spec.clusters) + 1)]
    return [*overlay, "127.0.0.1", "localhost"]


def oakestra_placement(placement: Placement) -> OakestraPlacement:
    """Oakestra's `direct` constraint: a cluster by name, a worker by hostname,
    or both (it has no node labels: a backend without PLACE_BY_LABELS)."""
    node = placement.node if placement.kind is PlacementKind.NODE else None
    return OakestraPlacement(cluster=placement.cluster, node=node)


def _files(
    secrets: JobSecrets | None, names: list[str], node: str | None
) -> dict[str, str]:
    if secrets is None:
        return {}
    files = {name: secrets.superlink[name] for name in names}
    if node is not None:
        files[NODE_KEY_FILE] = secrets.node_keys[node]
    return actor_files.encode(files)


def _trust(secrets: JobSecrets | None, node_key: bool) -> list[str]:
    if secrets is None:
        return ["--dev-insecure-flower"]
    key = ["--node-key", f"{FILES_DIR}/{NODE_KEY_FILE}"] if node_key else []
    return ["--files-from-env", FILES_DIR, "--tls-dir", FILES_DIR, *key]


SUPERLINK_FILES = (CA_FILE, SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE)


def _serving(
    spec: DeploymentSpec, secrets: JobSecrets | None, node: str | None
) -> tuple[list[str], dict[str, str]]:
    """What every SuperLink-bearing service shares: its listening arguments
    and its variables, the SuperLink's files and (a cluster's) its uplink's key
    among them."""
    args = [
        "--host",
        "0.0.0.0",  # noqa: S104 - its own container network
        "--port",
        str(DEFAULT_SUPERLINK_PORT),
        "--poll-interval",
        str(spec.poll_interval),
        *_trust(secrets, node_key=node is not None),
    ]
    environment = {
        **BASE_ENVIRONMENT,
        **spec.env,
        **spec.aggregator_env,
        **_files(secrets, list(SUPERLINK_FILES), node),
    }
    return args, environment


def aggregator_plan(spec: DeploymentSpec, secrets: JobSecrets | None) -> ServicePlan:
    args, environment = _serving(spec, secrets, None)
    flower_app = ["--flower-app", spec.flower_app[0]] if spec.flower_app else []
    return ServicePlan(
        name=AGGREGATOR,
        args=["aggregator", *args, *flower_app],
        environment=environment,
        resources=spec.resources,
        rr_ip=rr_ip(spec.job_id, 0),
    )


def cluster_plan(
    spec: DeploymentSpec, cluster: ClusterSpec, secrets: JobSecrets | None
) -> ServicePlan:
    index = spec.clusters.index(cluster)
    args, environment = _serving(spec, secrets, cluster_part(cluster.name, UPLINK))
    root = superlink_address(spec.job_id, 0)
    return ServicePlan(
        name=f"cluster{index}",
        args=["cluster", "--name", cluster.name, "--superlink", root, *args],
        environment=environment,
        resources=spec.resources,
        placement=oakestra_placement(cluster.placement),
        rr_ip=rr_ip(spec.job_id, index + 1),
    )


def learner_plan(
    spec: DeploymentSpec,
    learner: LearnerSpec,
    secrets: JobSecrets | None,
    data: DataVolume | None,
) -> ServicePlan:
    index = spec.learners.index(learner)
    clusters = [c.name for c in spec.clusters]
    dial = 0 if learner.cluster is None else clusters.index(learner.cluster) + 1
    threads = (
        {}
        if spec.resources.cpu is None
        else {name: str(math.ceil(spec.resources.cpu)) for name in THREAD_VARIABLES}
    )
    return ServicePlan(
        name=f"learner{index}",
        args=[
            "learner",
            "--superlink",
            superlink_address(spec.job_id, dial),
            "--name",
            learner.name,
            "--data-dir",
            f"{DATA_MOUNT}/{learner.name}",
            "--poll-interval",
            str(spec.poll_interval),
            "--partition-id",
            str(index),
            "--num-partitions",
            str(len(spec.learners)),
            *_trust(secrets, node_key=True),
            *(["--flower-app", spec.flower_app[1]] if spec.flower_app else []),
        ],
        environment={
            **BASE_ENVIRONMENT,
            **spec.env,
            **threads,
            **_files(secrets, [CA_FILE], learner.name),
        },
        resources=spec.resources,
        placement=oakestra_placement(learner.placement),
        volumes=(data.entry(),) if data is not None and learner.data else (),
    )

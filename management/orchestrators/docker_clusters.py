"""The `docker` orchestrator's containers for hierarchical mode, by pure functions.

A cluster is one container of the FL-actor image (`flops.actor cluster`): its
SuperLink, which its learners dial by the container's name, the executor of its
ServerApp, and its uplink, a SuperNode at the root SuperLink with its own
registered key, whose tasks hand the root's messages over the relay inside the
container. The cluster's SuperLink port is published on the host's loopback,
as the root's is, for `flwr run` and the registration of its learners' keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flops.actor import RELAY_DIR
from flops.app.relay import relay_path
from flops_management.orchestrators.base import (
    AGGREGATOR,
    UPLINK,
    ClusterEndpoint,
    ClusterSpec,
    DeploymentSpec,
    cluster_part,
)
from flops_management.orchestrators.docker_containers import (
    BASE_ENVIRONMENT,
    HOST_NETWORK,
    NODE_KEY_DIR,
    STATE_DIR,
    STATE_FILE,
    SUPERLINK_PORT,
    TLS_DIR,
    ContainerSpec,
    container_name,
    container_user,
    learner_container_spec,
)
from flops_management.orchestrators.flower_tls import JobTLS
from flops_management.orchestrators.node_auth import NODE_KEY_FILE, key_folder


@dataclass(frozen=True)
class ClusterPorts:
    """Host ports one cluster uses: its SuperLink's (published on loopback, or
    its own on the host network); on the host network, its uplink's runtime
    port and each learner's too."""

    superlink: int
    uplink: int
    learners: tuple[int, ...]


def cluster_hosts(job_id: str, clusters: tuple[ClusterSpec, ...]) -> list[str]:
    """The clusters' container names, which the job's SuperLink certificate
    names too (every SuperLink of the job serves it)."""
    return [container_name(job_id, cluster_part(c.name, AGGREGATOR)) for c in clusters]


def cluster_link(job_id: str, cluster: str, network: str, ports: ClusterPorts) -> str:
    """Where the cluster's learners dial its SuperLink."""
    if network == HOST_NETWORK:
        return f"127.0.0.1:{ports.superlink}"
    return (
        f"{container_name(job_id, cluster_part(cluster, AGGREGATOR))}:{SUPERLINK_PORT}"
    )


def endpoint(ports: ClusterPorts) -> ClusterEndpoint:
    """What the train stage needs of a cluster: its Control API, as the host
    reaches it, and its relay, as the actors see it."""
    return ClusterEndpoint(
        control_address=f"127.0.0.1:{ports.superlink}",
        relay=relay_path(RELAY_DIR),
    )


def cluster_container_spec(
    spec: DeploymentSpec,
    cluster: ClusterSpec,
    network: str,
    root: str,
    ports: ClusterPorts,
    tls: JobTLS | None,
    state: Path | None = None,
) -> ContainerSpec:
    """The cluster's container: `root`, the root SuperLink as it dials it;
    `state`, a folder for its SuperLink's state (None: in memory)."""
    on_host = network == HOST_NETWORK
    port = ports.superlink if on_host else SUPERLINK_PORT
    uplink = cluster_part(cluster.name, UPLINK)
    command = [
        "cluster",
        "--name",
        cluster.name,
        "--superlink",
        root,
        "--host",
        "127.0.0.1" if on_host else "0.0.0.0",  # noqa: S104 - its own network
        "--port",
        str(port),
        "--poll-interval",
        str(spec.poll_interval),
        *(["--tls-dir", TLS_DIR] if tls else ["--dev-insecure-flower"]),
        *(["--node-key", f"{NODE_KEY_DIR}/{NODE_KEY_FILE}"] if tls else []),
        *(["--database", f"{STATE_DIR}/{STATE_FILE}"] if state else []),
        *(["--runtime-port", str(ports.uplink)] if on_host else []),
    ]
    volumes: dict[str, dict[str, str]] = {}
    if tls is not None:
        volumes[str(tls.superlink)] = {"bind": TLS_DIR, "mode": "ro"}
        volumes[str(key_folder(spec, uplink))] = {"bind": NODE_KEY_DIR, "mode": "ro"}
    if state is not None:
        volumes[str(state)] = {"bind": STATE_DIR, "mode": "rw"}
    return ContainerSpec(
        name=container_name(spec.job_id, cluster_part(cluster.name, AGGREGATOR)),
        role=cluster_part(cluster.name, AGGREGATOR),
        command=command,
        environment={**BASE_ENVIRONMENT, **spec.env, **spec.aggregator_env},
        volumes=volumes,
        ports={} if on_host else {f"{port}/tcp": ("127.0.0.1", ports.superlink)},
        user=container_user(spec.identity),
    )


def cluster_learner_specs(
    spec: DeploymentSpec,
    cluster: ClusterSpec,
    network: str,
    ports: ClusterPorts,
    data: dict[str, Path],
    tls: JobTLS | None,
) -> list[ContainerSpec]:
    """The cluster's learners, dialling its SuperLink."""
    link = cluster_link(spec.job_id, cluster.name, network, ports)
    on_host = network == HOST_NETWORK
    return [
        learner_container_spec(
            spec, learner, link, runtime_port if on_host else None, data, tls
        )
        for learner, runtime_port in zip(
            spec.cluster_learners(cluster.name), ports.learners, strict=True
        )
    ]

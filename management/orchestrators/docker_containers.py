"""The `docker` orchestrator's containers, described by pure functions.

What each actor's container gets (command, mounts, limits, network) is decided
here, so it is tested by equality (tests/unit/test_docker_orchestrator.py);
`docker.py` only hands these specs to the Docker Engine API.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from flops.config import Resources
from flops_management.orchestrators.base import (
    AGGREGATOR,
    DeploymentSpec,
    LearnerSpec,
    placed_learners,
)
from flops_management.orchestrators.flower_tls import JobTLS
from flops_management.orchestrators.local_commands import THREAD_VARIABLES
from flops_management.orchestrators.node_auth import NODE_KEY_FILE, key_folder
from flops_management.sandbox import Identity

HOST_NETWORK = "host"
LEARNER_DATA = "/data"
# Where an actor container finds its TLS folder (flops.actor --tls-dir), and a
# learner's its node key (--node-key).
TLS_DIR = "/tls"
NODE_KEY_DIR = "/node-key"
STATE_DIR = "/state"
STATE_FILE = "superlink.db"
SUPERLINK_PORT = 8000  # inside a container network
# Every actor runs the tenant's code: as the tenant's ids, without capabilities,
# unable to gain privileges, writing only its own /tmp (its Flower home).
ACTOR_HOME = "/tmp"  # noqa: S108 - the container's own
BASE_ENVIRONMENT = {"HOME": ACTOR_HOME, "FLWR_HOME": f"{ACTOR_HOME}/flwr"}


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    role: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    # host path -> (container path, mode)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    # container port -> (host address, host port): only the aggregator's Control
    # API, on loopback, and only on a container network.
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    nano_cpus: int | None = None
    mem_limit: int | None = None
    # "uid:gid" the processes run as; None: the image's user.
    user: str | None = None


def container_user(identity: Identity | None) -> str | None:
    return None if identity is None else f"{identity.uid}:{identity.gid}"


def container_name(job_id: str, component: str) -> str:
    return f"flops-{job_id[:12]}-{component}"


def learner_threads(resources: Resources, learners: int) -> int:
    if resources.cpu is not None:
        return max(1, math.ceil(resources.cpu))
    return max(1, (os.cpu_count() or 1) // max(1, learners))


def superlink_hosts(job_id: str, network: str) -> list[str]:
    """The addresses the SuperLink's certificate is for: loopback (the `flwr`
    CLI, the aggregator's executor, learners on the host network) and, on a
    container network, the aggregator's name there."""
    loopback = ["127.0.0.1", "localhost"]
    if network == HOST_NETWORK:
        return loopback
    return [container_name(job_id, AGGREGATOR), *loopback]


def _tls_args(tls: JobTLS | None) -> list[str]:
    return ["--dev-insecure-flower"] if tls is None else ["--tls-dir", TLS_DIR]


def _bind(folder: Path | None, target: str) -> dict[str, dict[str, str]]:
    """`folder` bound read-only at `target`; nothing when there is none."""
    return {} if folder is None else {str(folder): {"bind": target, "mode": "ro"}}


def container_specs(
    spec: DeploymentSpec,
    network: str,
    superlink_port: int,
    learner_ports: list[int],
    data: dict[str, Path],
    tls: JobTLS | None,
    state: Path | None = None,
) -> list[ContainerSpec]:
    """The aggregator first, then one container per learner (`data`: each
    learner's data folder on this host, bound read-only; `tls`: the job's TLS
    folders, the SuperLink's for the aggregator, the CA's for learners, bound
    read-only at /tls, and each learner's node key (orchestrators.node_auth) at
    /node-key; None: plaintext, a dev switch).

    On the host network every actor listens on loopback ports chosen free by the
    caller; on a container network the aggregator is reached by its name and
    publishes its port to the host's loopback for `flwr run`.
    """
    on_host = network == HOST_NETWORK
    aggregator_name = container_name(spec.job_id, AGGREGATOR)
    port = superlink_port if on_host else SUPERLINK_PORT
    poll = str(spec.poll_interval)
    specs = [
        ContainerSpec(
            name=aggregator_name,
            role=AGGREGATOR,
            command=[
                "aggregator",
                "--host",
                "127.0.0.1" if on_host else "0.0.0.0",  # noqa: S104 - its own network
                "--port",
                str(port),
                "--poll-interval",
                poll,
                *_tls_args(tls),
                *(["--flower-app", spec.flower_app[0]] if spec.flower_app else []),
                *(["--database", f"{STATE_DIR}/{STATE_FILE}"] if state else []),
            ],
            environment={**BASE_ENVIRONMENT, **spec.env, **spec.aggregator_env},
            volumes={
                **_bind(tls.superlink if tls else None, TLS_DIR),
                # The SuperLink's state outlives its container (`state`).
                **({str(state): {"bind": STATE_DIR, "mode": "rw"}} if state else {}),
            },
            ports={} if on_host else {f"{port}/tcp": ("127.0.0.1", superlink_port)},
            user=container_user(spec.identity),
        )
    ]
    superlink = f"127.0.0.1:{port}" if on_host else f"{aggregator_name}:{port}"
    placed = spec.cluster_learners(None)
    for learner, runtime_port in zip(placed, learner_ports, strict=True):
        specs.append(
            learner_container_spec(
                spec, learner, superlink, runtime_port if on_host else None, data, tls
            )
        )
    return specs


def learner_container_spec(
    spec: DeploymentSpec,
    learner: LearnerSpec,
    superlink: str,
    runtime_port: int | None,
    data: dict[str, Path],
    tls: JobTLS | None,
) -> ContainerSpec:
    """One learner dialling `superlink`, with its partition of the data, its
    node key and the config's limits; `runtime_port`: its SuperNode's own port
    on the host network (None: the image's default, in its own network)."""
    index = spec.learners.index(learner)
    command = [
        "learner",
        "--superlink",
        superlink,
        "--name",
        learner.name,
        "--data-dir",
        LEARNER_DATA,
        "--poll-interval",
        str(spec.poll_interval),
        "--partition-id",
        str(index),
        "--num-partitions",
        str(len(spec.learners)),
        *_tls_args(tls),
        *(["--node-key", f"{NODE_KEY_DIR}/{NODE_KEY_FILE}"] if tls else []),
        *(["--flower-app", spec.flower_app[1]] if spec.flower_app else []),
    ]
    if runtime_port is not None:
        command += ["--port", str(runtime_port)]
    threads = str(learner_threads(spec.resources, len(placed_learners(spec.learners))))
    return ContainerSpec(
        name=container_name(spec.job_id, learner.name),
        role=learner.name,
        command=command,
        environment={
            **BASE_ENVIRONMENT,
            **spec.env,
            **{name: threads for name in THREAD_VARIABLES},
        },
        volumes={
            **_bind(data[learner.name], LEARNER_DATA),
            **_bind(tls.ca if tls else None, TLS_DIR),
            **_bind(key_folder(spec, learner.name) if tls else None, NODE_KEY_DIR),
        },
        nano_cpus=(
            int(spec.resources.cpu * 1e9) if spec.resources.cpu is not None else None
        ),
        mem_limit=spec.resources.memory_bytes(),
        user=container_user(spec.identity),
    )


SERVER_PORT = 8080  # flops.serve's default, EXPOSEd by the inference image


def server_container_spec(
    project_id: str,
    network: str,
    host: str,
    port: int,
    identity: Identity | None = None,
) -> ContainerSpec:
    """The inference server: on the host network it listens on `host:port`
    itself; on a container network its port is published there."""
    on_host = network == HOST_NETWORK
    return ContainerSpec(
        name=container_name(project_id, "inference"),
        role="inference",
        command=["--host", host, "--port", str(port)] if on_host else [],
        environment=dict(BASE_ENVIRONMENT),
        ports={} if on_host else {f"{SERVER_PORT}/tcp": (host, port)},
        user=container_user(identity),
    )

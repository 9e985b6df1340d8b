"""The orchestrator interface: place one SuperLink with its aggregator and N learners,
and, after training, an inference server for the registered model.

`Orchestrator.submit(spec)` starts the actors and returns a `Deployment` handle
with `status()`, `logs()`, `wait()` and `cancel()`. Learners only connect out to
the SuperLink; no learner exposes a port to the outside. An inference server
outlives its job: `start_server(spec)` returns a plain dict (stored with the
project) from which `server_status`, `server_logs` and `stop_server` find it
again, in this service's life or a later one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flops.config import Resources
from flops.errors import FlopsError
from flops.waiting import wait_until
from flops_management.orchestrators import fleet_front
from flops_management.orchestrators.topology import (
    Capability,
    Component,
    ComponentStatus,
    Placement,
    Role,
    StoredPartitions,
    Unsupported,
    missing,
)
from flops_management.sandbox import Identity
from flops_management.settings import Settings

AGGREGATOR = "aggregator"
SUPERLINK = "superlink"
FLEET_FRONT = "fleet-front"
# A learner's SuperNode, where it runs as a component of its own (`local`).
SUPERNODE_SUFFIX = "-supernode"
# A cluster's uplink: its node at the root SuperLink (hierarchical mode).
UPLINK = "uplink"


def cluster_part(cluster: str, part: str) -> str:
    """A cluster's component name: `<cluster>-superlink`, `<cluster>-aggregator`,
    `<cluster>-uplink` (the cluster name is a DNS label, so is this)."""
    return f"{cluster}-{part}"


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster of a hierarchical job: its aggregator and uplink are placed
    like its learners (`placement`)."""

    name: str
    placement: Placement = field(default_factory=Placement)


@dataclass(frozen=True)
class ClusterEndpoint:
    """Where the service reaches a cluster's SuperLink (`flwr run`), and the
    relay socket its aggregator serves the uplink on, as the actors see it."""

    control_address: str
    relay: str


@dataclass(frozen=True)
class LearnerSpec:
    name: str
    # Its partitions of the tenant's datasets (None: the repo loads its own data).
    data: StoredPartitions | None
    placement: Placement = field(default_factory=Placement)
    # Hierarchical mode: the cluster whose SuperLink it dials (None: the root).
    cluster: str | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    job_id: str
    workdir: Path
    repo_dir: Path
    learners: tuple[LearnerSpec, ...]
    resources: Resources = field(default_factory=Resources)
    # local: the user's environment (the model worker's) and FLOps' runtime
    # environment (Flower's side); container backends: the image.
    environment: Path | None = None
    runtime_environment: Path | None = None
    image: str | None = None
    poll_interval: float = 0.05
    # A Flower app's own (serverapp, clientapp) as `module:attribute`: its tasks
    # run in the user's environment (executor and all), with no model worker.
    flower_app: tuple[str, str] | None = None
    # Extra variables for every actor, and for the aggregator alone (its MLflow
    # credential, scoped to the job's experiment: learners never see it).
    env: dict[str, str] = field(default_factory=dict)
    aggregator_env: dict[str, str] = field(default_factory=dict, repr=False)
    # Who the tenant's code runs as (sandboxed backends); None: the service's
    # own unprivileged identity, in a user namespace.
    identity: Identity | None = None
    # Hierarchical mode: the clusters (each learner names its own); empty: the
    # learners dial the one SuperLink.
    clusters: tuple[ClusterSpec, ...] = ()

    def cluster_learners(self, cluster: str | None) -> tuple[LearnerSpec, ...]:
        """The placed learners that dial `cluster`'s SuperLink (None: the root's)."""
        return tuple(
            learner
            for learner in placed_learners(self.learners)
            if learner.cluster == cluster
        )


@dataclass(frozen=True)
class ServerSpec:
    """An inference server for one project's registered model."""

    project_id: str
    workdir: Path
    # The model's files (MLmodel, ...): what a process backend serves.
    model_dir: Path
    # Process backends: an environment with the model's requirements.
    environment: Path | None
    # Container backends: the inference image's tag (the builder also tags each
    # platform's build `<tag>-<arch>` locally).
    image: str | None
    # Where the server's port is published: address and port on the host.
    host: str
    port: int
    identity: Identity | None = None


@dataclass(frozen=True)
class LogLine:
    component: str
    text: str


class Deployment(ABC):
    """A running set of actors for one job."""

    # The CA certificate the SuperLink's is checked against (the `flwr` CLI's
    # `root-certificates`); None: plaintext (`dev_insecure_flower`).
    root_certificates: Path | None = None
    # Learner name -> its SuperNode's node id at the SuperLink (registered by
    # node authentication); empty in plaintext.
    nodes: dict[str, int] = {}
    # host:port that learners outside the host dial (the job's Fleet-only
    # front); None when every learner is placed by the backend.
    fleet_address: str | None = None
    # Hierarchical mode: each cluster's SuperLink and relay.
    clusters: dict[str, ClusterEndpoint] = {}
    # True: `logs()` may miss lines (Oakestra keeps an instance's last 1 KB),
    # so the aggregator's events are not the whole story: the job's end is
    # read from Flower's Control API and its model from MLflow.
    lossy_logs: bool = False

    @property
    @abstractmethod
    def control_address(self) -> str:
        """host:port where `flwr run` reaches the SuperLink's Control API."""

    @abstractmethod
    def components(self) -> list[Component]:
        """What this deployment placed, each with its role and learner."""

    @abstractmethod
    def status(self) -> dict[str, ComponentStatus]:
        """Component name -> its state (and exit code, once it exited)."""

    @abstractmethod
    def logs(self) -> Iterator[LogLine]:
        """Log lines written since the previous call (does not block)."""

    # How often `wait` asks `status()`: each ask may cost the backend a call.
    wait_interval_s = 0.2

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every component exited; False on timeout."""
        return wait_until(
            lambda: not any(state.alive for state in self.status().values()),
            timeout,
            interval=self.wait_interval_s,
        )

    @abstractmethod
    def cancel(self) -> None:
        """Stop and remove every component; safe to call more than once."""

    @abstractmethod
    def runtime_info(self) -> dict[str, Any]:
        """What a restarted service needs to clean this deployment up."""

    @abstractmethod
    def tail(self, component: str, lines: int = 20) -> str:
        """The component's last output lines ("" when there is none)."""

    @abstractmethod
    def stop_learner(self, learner: str) -> None:
        """Stop every component of one learner (the rest of the job goes on)."""

    def exited(self) -> list[str]:
        """Components that are no longer running."""
        return [name for name, state in self.status().items() if not state.alive]

    def learner_of(self, component: str) -> str | None:
        """The learner a component belongs to; None for the SuperLink/aggregator."""
        for placed in self.components():
            if placed.name == component:
                return placed.learner
        return None

    def component(self, name: str) -> Component | None:
        for placed in self.components():
            if placed.name == name:
                return placed
        return None


def placed_learners(learners: tuple[LearnerSpec, ...]) -> tuple[LearnerSpec, ...]:
    """The learners a backend places (not those that join by themselves)."""
    return tuple(learner for learner in learners if not learner.placement.is_joined)


def has_joined(learners: tuple[LearnerSpec, ...]) -> bool:
    return any(learner.placement.is_joined for learner in learners)


def job_components(
    learners: tuple[LearnerSpec, ...],
    separate: bool,
    clusters: tuple[ClusterSpec, ...] = (),
) -> list[Component]:
    """A job's components as a backend places them. `separate`: the SuperLink
    and each SuperNode are components of their own (processes); otherwise they
    share a container with the aggregator and with their learner's tasks (a
    cluster's SuperLink, aggregator and uplink share one). Joined learners are
    nobody's to place; with them comes the Fleet front."""
    placed = [
        Component(SUPERLINK, Role.SUPERLINK) if separate else None,
        Component(AGGREGATOR, Role.AGGREGATOR),
        Component(FLEET_FRONT, Role.FLEET_FRONT) if has_joined(learners) else None,
    ]
    for cluster in clusters:
        name = cluster.name
        if separate:
            placed += [
                Component(cluster_part(name, SUPERLINK), Role.SUPERLINK, cluster=name),
                Component(
                    cluster_part(name, UPLINK) + SUPERNODE_SUFFIX,
                    Role.SUPERNODE,
                    cluster=name,
                ),
                Component(cluster_part(name, UPLINK), Role.UPLINK, cluster=name),
            ]
        placed.append(
            Component(cluster_part(name, AGGREGATOR), Role.AGGREGATOR, cluster=name)
        )
    for learner in placed_learners(learners):
        if separate:
            placed.append(
                Component(
                    learner.name + SUPERNODE_SUFFIX,
                    Role.SUPERNODE,
                    learner.name,
                    learner.cluster,
                )
            )
        placed.append(
            Component(learner.name, Role.LEARNER, learner.name, learner.cluster)
        )
    return [c for c in placed if c is not None]


class Orchestrator(ABC):
    name: ClassVar[str]
    # True: actors run from the project's FL-actor image (the build stage builds
    # and pushes it); False: from a Python environment on this host.
    needs_image: ClassVar[bool] = False
    # What it can do beyond placing learners anywhere it likes (Capability).
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def submit(self, spec: DeploymentSpec) -> Deployment:
        """Start the SuperLink, the aggregator and every learner."""

    @abstractmethod
    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        """Remove what a deployment left behind when the service died mid-job."""

    def check(
        self, spec: DeploymentSpec, able: dict[Capability, list[str]] | None = None
    ) -> None:
        """Unsupported, before anything starts, for what this backend cannot do
        (`able`: the backends that can, to name in the error)."""
        placements = [(learner.name, learner.placement) for learner in spec.learners]
        error = missing(self.name, self.capabilities, placements, able or {})
        if error is not None:
            raise error
        if spec.clusters and Capability.CLUSTERS not in self.capabilities:
            others = (able or {}).get(Capability.CLUSTERS, [])
            raise Unsupported(
                f"The {self.name} orchestrator cannot run {Capability.CLUSTERS.value}"
                + (f" (these can: {', '.join(others)})" if others else "")
                + ".",
                hint="Choose an orchestrator that can, or use mode 'classic'.",
            )
        if any(learner.placement.is_joined for learner in spec.learners):
            if self.settings.dev_insecure_flower:
                raise Unsupported(
                    "Learners that join from other machines need TLS and node "
                    "authentication, which FLOPS_DEV_INSECURE_FLOWER turns off.",
                    hint="Unset FLOPS_DEV_INSECURE_FLOWER.",
                )
            fleet_front.require_host(self.settings)

    def notes(self, spec: DeploymentSpec) -> list[str]:
        """What the user should know about how the spec is applied (limits...)."""
        return []

    # -- inference servers (backends with Capability.INFERENCE_SERVERS) ----------

    # False: servers are processes of the service and stop with it (`flops down`).
    servers_outlive_service: ClassVar[bool] = True

    def _cannot_serve(self) -> FlopsError:
        return FlopsError(
            f"The {self.name} orchestrator cannot run inference servers.",
            hint="Use the local or docker orchestrator, or serve the inference "
            "image yourself.",
        )

    def start_server(self, spec: ServerSpec) -> dict[str, Any]:
        """Start serving; return what the other server methods need to find it."""
        raise self._cannot_serve()

    def server_status(self, handle: dict[str, Any]) -> ComponentStatus:
        """Running, or why not (exited with its code, removed)."""
        raise self._cannot_serve()

    def server_logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        """The last lines the server wrote."""
        return ""

    def stop_server(self, handle: dict[str, Any]) -> None:
        """Stop and remove the server; safe when it is already gone."""
        raise self._cannot_serve()

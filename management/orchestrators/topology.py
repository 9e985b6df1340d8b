"""What an orchestrator places and reports, in words every backend shares.

A job's topology is its components: the SuperLink with its aggregator, and each
learner (its SuperNode and its tasks), each with a `Role`. In hierarchical mode
the root SuperLink's nodes are the clusters' uplinks: each cluster has its own
SuperLink and aggregator, its uplink to the root beside them, and its
learners. A learner has a `Placement`: anywhere the backend likes, a named
node, nodes with given labels, or "joined": its owner runs it on their own
machine and it connects out. Each
component reports a `ComponentStatus` (a `ComponentState`, and the exit code
when there is one). What a backend cannot do is a `Capability` it lacks, and
asking for it is an `Unsupported` error before anything starts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flops.errors import ConfigError


class ComponentState(enum.Enum):
    PENDING = "pending"  # placed, not started yet (an image pull, a node to free)
    RUNNING = "running"
    EXITED = "exited"
    REMOVED = "removed"  # gone with no exit code to tell (removed by someone)


@dataclass(frozen=True)
class ComponentStatus:
    state: ComponentState
    code: int | None = None

    @classmethod
    def running(cls) -> ComponentStatus:
        return cls(ComponentState.RUNNING)

    @classmethod
    def exited(cls, code: int | None) -> ComponentStatus:
        return cls(ComponentState.EXITED, code)

    @property
    def alive(self) -> bool:
        return self.state in (ComponentState.PENDING, ComponentState.RUNNING)

    def __str__(self) -> str:
        if self.state is ComponentState.EXITED:
            return "exited" if self.code is None else f"exited (code {self.code})"
        if self.state is ComponentState.REMOVED:
            return "exited (removed)"
        return str(self.state.value)


class Role(enum.Enum):
    SUPERLINK = "superlink"
    AGGREGATOR = "aggregator"  # the ServerApp's executor (beside the SuperLink)
    SUPERNODE = "supernode"  # a learner's Flower SuperNode, where it is apart
    LEARNER = "learner"  # a learner's tasks (its executor), or all of it
    FLEET_FRONT = "fleet-front"  # the Fleet-only front joined learners dial
    UPLINK = "uplink"  # a cluster's node at the root SuperLink (its tasks)


@dataclass(frozen=True)
class Component:
    name: str
    role: Role
    learner: str | None = None  # the learner it belongs to
    cluster: str | None = None  # hierarchical mode: the cluster it belongs to


@dataclass(frozen=True)
class StoredPartitions:
    """A learner's data: its partition (`index`) of each of the tenant's stored
    datasets `tags`, as they are when the job starts. The backend puts it where
    the learner reads it (on this host: `orchestrators.host`)."""

    tenant: str
    tags: tuple[str, ...]
    index: int


class PlacementKind(enum.Enum):
    ANY = "any"
    NODE = "node"
    LABELS = "labels"
    JOINED = "joined"


@dataclass(frozen=True)
class Placement:
    """Where one learner runs."""

    kind: PlacementKind = PlacementKind.ANY
    node: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    # One of the orchestrator's own clusters (Oakestra's), with or without a
    # node in it.
    cluster: str | None = None

    @classmethod
    def on_node(cls, node: str, cluster: str | None = None) -> Placement:
        return cls(PlacementKind.NODE, node=node, cluster=cluster)

    @classmethod
    def with_labels(cls, labels: Mapping[str, str]) -> Placement:
        return cls(PlacementKind.LABELS, labels=tuple(sorted(labels.items())))

    @classmethod
    def in_cluster(cls, cluster: str) -> Placement:
        return cls(cluster=cluster)

    @classmethod
    def joined(cls) -> Placement:
        return cls(PlacementKind.JOINED)

    @property
    def is_joined(self) -> bool:
        return self.kind is PlacementKind.JOINED

    def __str__(self) -> str:
        where = f"cluster {self.cluster}" if self.cluster else ""
        if self.kind is PlacementKind.NODE:
            return f"node {self.node}" + (f" of {where}" if where else "")
        if self.kind is PlacementKind.LABELS:
            return "nodes labelled " + ",".join(f"{k}={v}" for k, v in self.labels)
        return where or str(self.kind.value)


class Capability(enum.Enum):
    PLACE_ON_NODE = "placing a learner on a named node"
    PLACE_BY_LABELS = "placing a learner by node labels"
    JOINED_LEARNERS = "learners that join from their owners' machines"
    INFERENCE_SERVERS = "running inference servers"
    CLUSTERS = "hierarchical aggregation (an aggregator per cluster)"
    PLACE_IN_CLUSTER = "placing in one of the orchestrator's own clusters"


PLACEMENT_NEEDS: dict[PlacementKind, Capability] = {
    PlacementKind.NODE: Capability.PLACE_ON_NODE,
    PlacementKind.LABELS: Capability.PLACE_BY_LABELS,
    PlacementKind.JOINED: Capability.JOINED_LEARNERS,
}


class Unsupported(ConfigError):
    """The chosen orchestrator cannot do what the project asks."""


def missing(
    name: str,
    capabilities: frozenset[Capability],
    placements: Iterable[tuple[str, Placement]],
    able: Mapping[Capability, list[str]],
) -> Unsupported | None:
    """The error for every learner whose placement `name` cannot honour, with
    the backends that can (`able`), or None."""
    wanting: dict[Capability, list[str]] = {}
    for learner, placement in placements:
        needs = [PLACEMENT_NEEDS.get(placement.kind)]
        if placement.cluster is not None:
            needs.append(Capability.PLACE_IN_CLUSTER)
        for need in needs:
            if need is not None and need not in capabilities:
                wanting.setdefault(need, []).append(f"{learner} ({placement})")
    if not wanting:
        return None
    lines = [
        f"{need.value}: {', '.join(learners)}"
        + (f" (these can: {', '.join(able[need])})" if able.get(need) else "")
        for need, learners in wanting.items()
    ]
    return Unsupported(
        f"The {name} orchestrator cannot do what the project asks:\n  "
        + "\n  ".join(lines),
        hint="Choose an orchestrator that can, or drop those learners' placement.",
    )

"""Following the clusters of a hierarchical job (beside `follow.RunFollower`).

Each cluster's aggregator writes events into its log as the root's does; they
become the job's, naming the cluster. What the root says of its nodes is said
of clusters (its nodes are the clusters' uplinks), and a cluster's own run
starts and ends within the job's. A cluster whose learners are all gone, or
whose own actors stopped, is reported once (`cluster_lost`); whether the job
goes on is the root's to say (min_fit/min_evaluate count clusters).
"""

from __future__ import annotations

from typing import Any

from flops import events
from flops.executor import TASK_EXITED
from flops_management.models import Progress
from flops_management.orchestrators import Deployment
from flops_management.orchestrators.base import UPLINK
from flops_management.pipeline.context import JobContext

ROOT_NODE_EVENTS = {
    events.LEARNER_CONNECTED: events.CLUSTER_CONNECTED,
    events.LEARNER_JOINED: events.CLUSTER_JOINED,
    events.LEARNER_FAILED: events.CLUSTER_FAILED,
}
CLUSTER_RUN_EVENTS = {
    events.RUN_STARTED: events.CLUSTER_STARTED,
    events.RUN_FINISHED: events.CLUSTER_FINISHED,
    events.RUN_FAILED: events.CLUSTER_FAILED,
}


class ClusterFollower:
    def __init__(
        self, ctx: JobContext, deployment: Deployment, progress: Progress
    ) -> None:
        self.ctx = ctx
        self.deployment = deployment
        self.progress = progress
        self.lost: set[str] = set()
        self.connected: dict[str, int] = {}

    def accounted(self, cluster: str | None) -> bool:
        return cluster is not None and cluster in self.lost

    def lose(self, cluster: str, why: str) -> None:
        if cluster in self.lost:
            return
        self.lost.add(cluster)
        self.ctx.log(f"cluster {cluster} is lost ({why}), round {self.progress.round}")
        self.ctx.event(
            events.CLUSTER_LOST, cluster=cluster, reason=why, round=self.progress.round
        )

    def learner_lost(self, learner: str) -> None:
        """A learner is gone: its cluster too, when it was the last one."""
        placed = self.deployment.component(learner)
        cluster = placed.cluster if placed else None
        if cluster is not None and all(
            c.learner in self.progress.learners_lost
            for c in self.deployment.components()
            if c.cluster == cluster and c.learner is not None
        ):
            self.lose(cluster, "all its learners are gone")

    def _cluster_of_node(self, node_id: Any) -> str | None:
        """The cluster whose uplink is the root's node `node_id`."""
        for name, node in self.deployment.nodes.items():
            if node == node_id and name.endswith(f"-{UPLINK}"):
                return name.removesuffix(f"-{UPLINK}")
        return None

    def root_event(self, kind: str, event: dict[str, Any]) -> None:
        """One of the root's node events, said of the cluster (named by the
        uplink's reply, else by its node id)."""
        kind = ROOT_NODE_EVENTS[kind]
        named = event.pop("learner", None)
        event["cluster"] = self._cluster_of_node(event.get("node_id")) or named
        if kind == events.CLUSTER_FAILED:
            self.ctx.log(
                f"cluster {event['cluster']} failed in round "
                f"{event.get('round')}: {event.get('reason')}"
            )
        self.ctx.event(kind, **event)

    def cluster_event(self, cluster: str, kind: str, event: dict[str, Any]) -> None:
        """A cluster aggregator's event, as the job's, naming the cluster."""
        event.pop("cluster", None)
        event.pop("time", None)
        if kind == TASK_EXITED:
            # In one container with it, the uplink's tasks (role "learner")
            # write here too; the root reports a failed one as the cluster's.
            if event.get("code") == 0 or event.get("role") != "aggregator":
                return
            kind = events.CLUSTER_FAILED
            event = {"reason": f"its aggregator exited with code {event.get('code')}"}
        kind = CLUSTER_RUN_EVENTS.get(kind, kind)
        if kind == events.LEARNER_CONNECTED:
            self.connected[cluster] = int(event.get("connected", 0))
            self.progress.learners_connected = sum(self.connected.values())
            self.ctx.store.update_project(self.ctx.project_id, progress=self.progress)
        elif kind == events.LEARNER_FAILED:
            self.ctx.log(
                f"{event.get('learner')} (cluster {cluster}) failed in round "
                f"{event.get('round')}: {event.get('reason')}"
            )
        elif kind == events.CLUSTER_FAILED:
            why = event.get("reason") or event.get("message")
            self.ctx.log(f"cluster {cluster}: {why}")
        self.ctx.event(kind, cluster=cluster, **event)

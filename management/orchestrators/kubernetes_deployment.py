"""A job on Kubernetes as the pipeline follows it: its Pods' phases as
component states, their logs (each line once), a learner stopped, the job's
objects deleted by its label; and the seam where learners' node keys reach the
SuperLink's Control API.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flops.errors import FlopsError
from flops_management.orchestrators import kubernetes_objects as o
from flops_management.orchestrators.base import (
    Deployment,
    DeploymentSpec,
    LogLine,
    job_components,
)
from flops_management.orchestrators.kubernetes_api import (
    KubeAPI,
    pod_status,
)
from flops_management.orchestrators.topology import (
    Component,
    ComponentStatus,
)

log = logging.getLogger(__name__)

# (Control API address, CA file, [(learner, public key PEM)]) -> node ids. The
# seam where node keys reach the SuperLink (tests put a recorder here).
NodeRegistrar = Callable[[str, Path, list[tuple[str, bytes]]], dict[str, int]]


def register_with_superlink(
    address: str, ca_file: Path, keys: list[tuple[str, bytes]], timeout: float = 120.0
) -> dict[str, int]:
    """Through the SuperLink's Control API, retried while its Pod starts serving
    (Running comes before the port answers)."""
    from flops_management.orchestrators.superlink_control import SuperLinkControl

    deadline = time.monotonic() + timeout
    nodes: dict[str, int] = {}
    while True:
        try:
            with SuperLinkControl(address, ca_file) as control:
                for name, pem in keys:
                    # A key registered once cannot be registered again.
                    if name not in nodes:
                        nodes[name] = control.register(pem, name).node_id
            return nodes
        except FlopsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


LOG_SLACK_S = 10


def stamp_key(stamp: str) -> str:
    """An RFC 3339 timestamp (the kubelet's, up to nanoseconds, trailing zeros
    trimmed) as a string that sorts as the time does."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}"


def since_seconds(key: str) -> int:
    """Whole seconds from `key` (a `stamp_key`) to now, at least 1."""
    then = datetime.strptime(key[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return max(1, math.ceil(datetime.now(UTC).timestamp() - then.timestamp()))


class KubernetesDeployment(Deployment):
    wait_interval_s = 0.5  # each status() lists the job's pods

    def __init__(self, api: KubeAPI, spec: DeploymentSpec, control: str) -> None:
        self.api = api
        self.job_id = spec.job_id
        self._control = control
        self._components = job_components(spec.learners, False, spec.clusters)
        self.clusters = {}
        self.pods = {
            c.name: o.object_name(spec.job_id, c.name) for c in self._components
        }
        # Per component: the last log line's timestamp and how many lines had it.
        self._seen: dict[str, tuple[str, int]] = {}

    @property
    def control_address(self) -> str:
        return self._control

    def components(self) -> list[Component]:
        return list(self._components)

    def status(self) -> dict[str, ComponentStatus]:
        pods = {p.metadata.name: p for p in self.api.list("pods", self.job_id)}
        return {c: pod_status(pods.get(pod)) for c, pod in self.pods.items()}

    def logs(self) -> Iterator[LogLine]:
        for component, pod in self.pods.items():
            yield from self._new_lines(component, pod)

    def _new_lines(self, component: str, pod: str) -> Iterator[LogLine]:
        """The pod's log since the last line returned: asked with timestamps
        for a window from that line's second on (with slack for clock skew
        between this host and the node), lines already returned skipped."""
        last, count = self._seen.get(component, ("", 0))
        since = None if not last else since_seconds(last) + LOG_SLACK_S
        text = self.api.pod_log(pod, timestamps=True, since_seconds=since)
        skip = count
        for row in text.splitlines():
            stamp, _, line = row.partition(" ")
            key = stamp_key(stamp)
            if key < last or (key == last and skip > 0):
                skip -= key == last
                continue
            last, count = key, (count + 1 if key == last else 1)
            self._seen[component] = (last, count)
            yield LogLine(component, line)

    def cancel(self) -> None:
        self.api.delete_job(self.job_id)

    def stop_learner(self, learner: str) -> None:
        for component in self._components:
            if component.learner == learner:
                self.api.delete("pods", self.pods[component.name])

    def tail(self, component: str, lines: int = 20) -> str:
        pod = self.pods.get(component)
        return "" if pod is None else self.api.pod_log(pod, tail=lines)

    def runtime_info(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "namespace": self.api.namespace,
            "pods": dict(self.pods),
        }

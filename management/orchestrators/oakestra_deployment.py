"""A job's actors as services of one Oakestra application: status, logs,
undeploy.

Status is each service's instance as the root orchestrator reports it
(`instance_list[].status`; a service Oakestra could not schedule has no
instance, only a negative status at service level). Logs are what Oakestra
keeps of an instance's output: its last 1,024 bytes (there is no log route),
polled and de-duplicated here, so a component that writes fast loses lines
between two polls; the job's rounds are complete in MLflow all the same.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from oakestra_utils.types.statuses import DeploymentStatus, NegativeSchedulingStatus

from flops.errors import FlopsError
from flops_management.orchestrators.base import (
    ClusterEndpoint,
    Deployment,
    LogLine,
)
from flops_management.orchestrators.oakestra_api import OakestraAPI, OakestraError
from flops_management.orchestrators.topology import (
    Component,
    ComponentState,
    ComponentStatus,
)

# Oakestra's statuses, read as FLOps' states: a service the root scheduler found
# no place for has no instance, only a negative status of its own.
NOT_SCHEDULED = frozenset(s.value for s in NegativeSchedulingStatus)
# Oakestra reports no exit code: FAILED is a non-zero exit, COMPLETED (a
# one-shot's) and DEAD (anything else's) a zero one.
EXIT_CODES = {
    DeploymentStatus.FAILED.value: 1,
    DeploymentStatus.COMPLETED.value: 0,
    DeploymentStatus.DEAD.value: 0,
}
LOG_BYTES = 1024  # what a worker's NodeEngine keeps of an instance's log


def instance_status(service: dict[str, Any] | None) -> ComponentStatus:
    """One service's single instance as a component's status."""
    if not service:
        return ComponentStatus(ComponentState.REMOVED)
    instances = service.get("instance_list") or []
    if not instances:
        if service.get("status") in NOT_SCHEDULED:
            return ComponentStatus.exited(None)
        return ComponentStatus(ComponentState.PENDING)
    status = str(instances[-1].get("status", ""))
    if status == DeploymentStatus.RUNNING.value:
        return ComponentStatus.running()
    if status in EXIT_CODES:
        return ComponentStatus.exited(EXIT_CODES[status])
    if status == DeploymentStatus.UNDEPLOYED.value:
        return ComponentStatus(ComponentState.REMOVED)
    return ComponentStatus(ComponentState.PENDING)


def not_scheduled_reason(service: dict[str, Any] | None) -> str:
    """Why Oakestra placed no instance ("" when it did)."""
    if service and not service.get("instance_list"):
        status = str(service.get("status", ""))
        if status in NOT_SCHEDULED:
            detail = service.get("status_detail")
            return f"Oakestra could not schedule it: {status}" + (
                f" ({detail})" if detail else ""
            )
    return ""


def instance_logs(service: dict[str, Any] | None) -> str:
    """What Oakestra keeps of the service's (latest) instance's output."""
    instances = (service or {}).get("instance_list") or []
    return str(instances[-1].get("logs") or "") if instances else ""


def log_tail(service: dict[str, Any] | None, lines: int) -> str:
    """The last `lines` of its output, or why Oakestra placed no instance."""
    text = not_scheduled_reason(service) or instance_logs(service)
    return "\n".join(text.splitlines()[-lines:])


def new_lines(previous: str, current: str) -> list[str]:
    """The lines of `current` (a log's last bytes) not already in `previous`
    (the same log's last bytes at the poll before). A tail cut at the byte
    limit starts mid-line: that first piece is dropped."""
    lines = current.splitlines()
    if len(current.encode()) >= LOG_BYTES and lines:
        lines = lines[1:]
    before = previous.splitlines()
    for overlap in range(min(len(before), len(lines)), 0, -1):
        if before[-overlap:] == lines[:overlap]:
            return lines[overlap:]
    return lines


class OakestraDeployment(Deployment):
    wait_interval_s = 2.0  # each status() asks the root for every service
    lossy_logs = True  # Oakestra keeps an instance's last 1,024 bytes
    # The root orchestrator serves one request at a time: its answers are
    # reused for this long by status(), logs() and tail() alike.
    refresh_s = 1.5

    def __init__(
        self,
        api: OakestraAPI,
        job_id: str,
        components: list[Component],
        control: str,
        clusters: dict[str, ClusterEndpoint],
    ) -> None:
        self.api = api
        self.job_id = job_id
        self._components = components
        self._control = control
        self.clusters = dict(clusters)
        self.nodes = {}
        self.application_id: str | None = None
        # Component -> its Oakestra service id, as each is created.
        self.services: dict[str, str] = {}
        self._tails: dict[str, str] = {}
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    @property
    def control_address(self) -> str:
        return self._control

    def components(self) -> list[Component]:
        return list(self._components)

    def _service(self, component: str) -> dict[str, Any] | None:
        service_id = self.services.get(component)
        if service_id is None:
            return None
        cached = self._cache.get(service_id)
        if cached is not None and time.monotonic() - cached[0] < self.refresh_s:
            return cached[1]
        try:
            found: dict[str, Any] | None = self.api.service(service_id)
        except OakestraError:  # deleted by someone else: gone
            found = None
        self._cache[service_id] = (time.monotonic(), found)
        return found

    def deploy(self, component: str) -> None:
        """Ask Oakestra for the component's instance."""
        service_id = self.services[component]
        self._cache.pop(service_id, None)
        self.api.deploy(service_id)

    def component_status(self, component: str) -> ComponentStatus:
        return instance_status(self._service(component))

    def status(self) -> dict[str, ComponentStatus]:
        return {
            c.name: (
                instance_status(self._service(c.name))
                if c.name in self.services
                else ComponentStatus(ComponentState.PENDING)
            )
            for c in self._components
        }

    def logs(self) -> Iterator[LogLine]:
        for component in list(self.services):
            current = instance_logs(self._service(component))
            previous = self._tails.get(component, "")
            if current and current != previous:
                self._tails[component] = current
                for line in new_lines(previous, current):
                    yield LogLine(component, line)

    def tail(self, component: str, lines: int = 20) -> str:
        return log_tail(self._service(component), lines)

    def _undeploy(self, service_id: str) -> None:
        """Each instance first, then the service (Oakestra's delete of a whole
        service can miss instances)."""
        self._cache.pop(service_id, None)
        with contextlib.suppress(OakestraError):
            found = self.api.service(service_id)
            for instance in found.get("instance_list") or []:
                with contextlib.suppress(OakestraError):
                    self.api.undeploy(service_id, int(instance["instance_number"]))
        with contextlib.suppress(OakestraError):
            self.api.delete_service(service_id)

    def stop_learner(self, learner: str) -> None:
        for component in self._components:
            service_id = self.services.get(component.name)
            if component.learner == learner and service_id is not None:
                self._undeploy(service_id)

    def cancel(self) -> None:
        """Undeploy every instance, delete every service and the application;
        safe to call again (what is gone already is skipped)."""
        for service_id in list(self.services.values()):
            self._undeploy(service_id)
        if self.application_id is not None:
            with contextlib.suppress(OakestraError):
                self.api.delete_application(self.application_id)
        self.services.clear()

    def runtime_info(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "application_id": self.application_id,
            "services": dict(self.services),
        }


def undeploy_application(api: OakestraAPI, application_id: str) -> None:
    """Everything of one application (a restarted service's cleanup)."""
    for service in api.application_services(application_id):
        service_id = str(service.get("microserviceID") or "")
        if not service_id:
            continue
        for instance in service.get("instance_list") or []:
            with contextlib.suppress(OakestraError):
                api.undeploy(service_id, int(instance["instance_number"]))
        with contextlib.suppress(OakestraError):
            api.delete_service(service_id)
    try:
        api.delete_application(application_id)
    except OakestraError as err:
        raise FlopsError(f"Could not delete Oakestra application: {err}") from err

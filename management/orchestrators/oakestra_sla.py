"""The `oakestra` orchestrator's SLAs, built by pure functions.

Oakestra (https://oakestra.io) deploys *applications* of *microservices* from
an SLA posted to its root orchestrator (`sla_version` "v2.0"; the schema is the
root's `sla/schema.py`). FLOps makes one application per job: a service per
actor (the root aggregator, each cluster's aggregator, each learner), each the
FL-actor image with its command (`cmd` replaces the image's whole argv), its
variables (`environment`, "KEY=value"), the config's `vcpus`/`memory`, a
`direct` constraint from its placement (an Oakestra cluster and/or a worker's
hostname), and for the SuperLink-bearing services a fixed round-robin address
(`addresses.rr_ip`, 10.30.x.y) that the others dial on Oakestra's overlay.
Actors that end are `one_shot`: Oakestra's clusters restart an instance that
exits otherwise, and a finished learner must stay finished.

Names: Oakestra accepts only `[a-zA-Z0-9]{1,30}` for application, service and
namespace names, so components are named by role and index
(`aggregator`, `cluster0`, `learner3`), never by user-given names.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from flops.config import Resources

SLA_VERSION = "v2.0"
NAMESPACE = "flops"
IMAGE_ENTRYPOINT = ["python3", "-m", "flops.actor"]  # images/fl-actor.Containerfile
_OAKESTRA_NAME = re.compile(r"^[a-zA-Z0-9]{1,30}$")


@dataclass(frozen=True)
class OakestraPlacement:
    """A `direct` constraint: an Oakestra cluster's name, a worker's hostname,
    or both; neither: anywhere the root scheduler likes."""

    cluster: str | None = None
    node: str | None = None

    def constraints(self) -> list[dict[str, str]]:
        if self.cluster is None and self.node is None:
            return []
        constraint = {"type": "direct"}
        if self.cluster is not None:
            constraint["cluster"] = self.cluster
        if self.node is not None:
            constraint["node"] = self.node
        return [constraint]


@dataclass(frozen=True)
class ServicePlan:
    """One actor as an Oakestra microservice."""

    name: str  # aggregator, cluster<i>, learner<i>
    args: list[str]  # flops.actor's arguments (after the entrypoint)
    environment: dict[str, str]
    resources: Resources = field(default_factory=Resources)
    placement: OakestraPlacement = field(default_factory=OakestraPlacement)
    rr_ip: str | None = None  # the address others dial it at (SuperLinks)
    # CSI volumes ({volume_id, csi_driver, mount_path}): a learner's data.
    volumes: tuple[dict[str, str], ...] = ()
    # "hostPort:containerPort/tcp" on the worker: an inference server's alone.
    port: str = ""
    # False: a server that must keep running (restarted if it stops).
    one_shot: bool = True
    # True: the image's own command (an inference image's), `args` unused.
    keep_image_command: bool = False


def app_name(job_id: str) -> str:
    """The job's application: `flops` and the job id's first 12 hex digits."""
    name = f"flops{job_id[:12]}"
    check_name(name)
    return name


def check_name(name: str) -> str:
    if not _OAKESTRA_NAME.match(name):
        raise ValueError(f"{name!r} is not an Oakestra name ([a-zA-Z0-9]{{1,30}})")
    return name


def rr_ip(job_id: str, index: int) -> str:
    """A fixed round-robin address for the job's `index`-th SuperLink, in
    Oakestra's service range 10.30.0.0/16: the job's own /24-sized block by a
    hash of its id (a clash with another job's is refused by Oakestra and
    reported), the index within it."""
    if not 0 <= index < 253:
        raise ValueError("a job has at most 253 SuperLinks")
    block = int(hashlib.sha256(job_id.encode()).hexdigest()[:4], 16) % 254 + 1
    return f"10.30.{block}.{index + 1}"


def memory_mb(resources: Resources) -> int:
    """Oakestra's `memory` is whole megabytes (0: no requirement)."""
    memory = resources.memory_bytes()
    return 0 if memory is None else math.ceil(memory / 2**20)


def vcpus(resources: Resources) -> int:
    """Oakestra's `vcpus` is whole cores (0: no requirement)."""
    return 0 if resources.cpu is None else math.ceil(resources.cpu)


def microservice(plan: ServicePlan, image: str) -> dict[str, Any]:
    service: dict[str, Any] = {
        "microserviceID": "",
        "microservice_name": check_name(plan.name),
        "microservice_namespace": NAMESPACE,
        "virtualization": "container",
        "code": image,
        "cmd": [] if plan.keep_image_command else [*IMAGE_ENTRYPOINT, *plan.args],
        "environment": [f"{k}={v}" for k, v in sorted(plan.environment.items())],
        "memory": memory_mb(plan.resources),
        "vcpus": vcpus(plan.resources),
        "vgpus": 0,
        "vtpus": 0,
        "bandwidth_in": 0,
        "bandwidth_out": 0,
        "storage": 0,
        # Actors publish nothing on the worker: learners dial out.
        "port": plan.port,
        "one_shot": plan.one_shot,
        "added_files": [],
    }
    if plan.rr_ip is not None:
        service["addresses"] = {"rr_ip": plan.rr_ip}
    if plan.volumes:
        service["volumes"] = [dict(volume) for volume in plan.volumes]
    constraints = plan.placement.constraints()
    if constraints:
        service["constraints"] = constraints
    return service


def application_sla(
    job_id: str,
    customer: str,
    description: str,
    services: list[dict[str, Any]],
    application_id: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The SLA of the job's application (`name`: another application's, an
    inference server's). `application_id`: the created one's, for adding
    services to it (`POST /api/service/`); None: to create it
    (`POST /api/application/`)."""
    application: dict[str, Any] = {
        "application_name": check_name(name) if name else app_name(job_id),
        "application_namespace": NAMESPACE,
        "application_desc": description[:200],
        "microservices": services,
    }
    if application_id is not None:
        application = {"applicationID": application_id, **application}
    return {
        "sla_version": SLA_VERSION,
        "customerID": customer,
        "applications": [application],
    }

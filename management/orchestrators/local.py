"""The `local` orchestrator: SuperLink, aggregator and learners as processes here.

Flower's side of every actor runs from FLOps' runtime environment, the user's
code from the project's own environment, in the model worker each executor
starts (both built by the `build` stage); each learner has its own data
directory and Flower home. The SuperLink
and SuperNodes run with `--isolation process` next to a `flops-executor` each,
which keeps imports warm across tasks (see flops/executor.py). Each actor runs in
the tenant's sandbox (flops_management.sandbox), seeing only the environment, the
repo, its own data and its own Flower home (`local_commands.actor_mounts`).

Per-learner limits: memory as the data-segment rlimit (`prlimit --data`), CPU as
a set of pinned cores (`taskset`); fractional CPU is rounded up to whole cores,
which `notes()` tells the user.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flops import subprocesses
from flops.errors import FlopsError
from flops.waiting import wait_until
from flops_management.orchestrators import fleet_front
from flops_management.orchestrators.base import (
    AGGREGATOR,
    FLEET_FRONT,
    SUPERLINK,
    ClusterEndpoint,
    Deployment,
    DeploymentSpec,
    LogLine,
    Orchestrator,
    ServerSpec,
    has_joined,
    job_components,
    placed_learners,
)
from flops_management.orchestrators.flower_tls import JobTLS, issue_job_tls
from flops_management.orchestrators.host import stage_learner_data
from flops_management.orchestrators.local_actors import LocalActors, Processes
from flops_management.orchestrators.local_commands import server_args
from flops_management.orchestrators.log_file import LogFile
from flops_management.orchestrators.node_auth import enrol_learners
from flops_management.orchestrators.ports import free_port
from flops_management.orchestrators.topology import (
    Capability,
    Component,
    ComponentStatus,
)
from flops_management.sandbox import Mounts, sandbox_for, tenant_env

_OWN_PROCESS_MARKERS = (b"flower-superlink", b"flower-supernode", b"flops.executor")
_SERVER_MARKER = b"flops.serve"


# -- the deployment -----------------------------------------------------------


class LocalDeployment(Processes):
    def __init__(self, control_address: str, spec: DeploymentSpec) -> None:
        self._control = control_address
        self._components = job_components(spec.learners, True, spec.clusters)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_files: dict[str, LogFile] = {}
        self.nodes: dict[str, int] = {}
        self.clusters: dict[str, ClusterEndpoint] = {}

    @property
    def control_address(self) -> str:
        return self._control

    def components(self) -> list[Component]:
        return list(self._components)

    def status(self) -> dict[str, ComponentStatus]:
        states = {}
        for name, proc in self.processes.items():
            code = proc.poll()
            states[name] = (
                ComponentStatus.running()
                if code is None
                else ComponentStatus.exited(code)
            )
        return states

    def logs(self) -> Iterator[LogLine]:
        for name, log in self.log_files.items():
            for line in log.new_lines():
                yield LogLine(name, line)

    def wait(self, timeout: float | None = None) -> bool:
        return wait_until(
            lambda: all(proc.poll() is not None for proc in self.processes.values()),
            timeout,
        )

    def cancel(self) -> None:
        # Called once the run is over (or cancelled): nothing is left to save, so
        # graceful shutdown (2-3 s for Flower's servers) only delays the result.
        subprocesses.kill_groups(list(self.processes.values()), grace=1.0)

    def runtime_info(self) -> dict[str, Any]:
        return {"pids": {name: proc.pid for name, proc in self.processes.items()}}

    def stop_learner(self, learner: str) -> None:
        parts = {c.name for c in self._components if c.learner == learner}
        procs = [proc for name, proc in self.processes.items() if name in parts]
        # SIGTERM first: a SuperNode that stops gracefully leaves the federation
        # at once, so the aggregator stops waiting for it.
        subprocesses.kill_groups(procs, grace=3.0)

    def tail(self, component: str, lines: int = 20) -> str:
        log = self.log_files.get(component)
        return "" if log is None else log.tail(lines)


class LocalOrchestrator(Orchestrator):
    name = "local"
    capabilities = frozenset(
        {
            Capability.INFERENCE_SERVERS,
            Capability.JOINED_LEARNERS,
            Capability.CLUSTERS,
        }
    )
    servers_outlive_service = False

    def notes(self, spec: DeploymentSpec) -> list[str]:
        notes = []
        cpu = spec.resources.cpu
        if cpu is not None and cpu != math.ceil(cpu):
            notes.append(
                f"local orchestrator: cpu {cpu} is applied as {math.ceil(cpu)} pinned "
                "core(s) per learner; fractional shares need a container backend"
            )
        if spec.resources.memory is not None:
            notes.append(
                f"local orchestrator: memory {spec.resources.memory} is applied as "
                "each "
                "learner's data-segment limit (prlimit --data)"
            )
        return notes

    def submit(self, spec: DeploymentSpec) -> Deployment:
        if spec.environment is None:
            raise FlopsError("The local orchestrator needs the project's environment.")
        # Flower's side from FLOps' runtime environment (the user's environment
        # when none is given: it then holds both).
        bin_dir = (spec.runtime_environment or spec.environment) / "bin"
        link_port = free_port()
        deployment = LocalDeployment(f"127.0.0.1:{link_port}", spec)
        try:
            tls = issue_job_tls(
                self.settings, spec.workdir, ["127.0.0.1", "localhost"], spec.identity
            )
            deployment.root_certificates = tls.ca_file if tls else None
            actors = LocalActors(
                self.settings,
                spec,
                deployment,
                bin_dir,
                stage_learner_data(self.settings, spec),
                tls,
            )
            self._start(spec, actors, link_port, deployment, tls)
        except BaseException:
            deployment.cancel()
            raise
        return deployment

    def _start(
        self,
        spec: DeploymentSpec,
        actors: LocalActors,
        link_port: int,
        deployment: LocalDeployment,
        tls: JobTLS | None,
    ) -> None:
        front = fleet_front.plan(self.settings) if has_joined(spec.learners) else None
        link = actors.superlink(SUPERLINK, link_port)
        actors.aggregator(AGGREGATOR, link)
        if front is not None:
            assert tls is not None  # Orchestrator.check refused plaintext
            log = spec.workdir / "logs" / f"{FLEET_FRONT}.log"
            deployment.add(
                FLEET_FRONT,
                fleet_front.start(self.settings, spec.workdir, front, link, tls, log),
                log,
            )
            deployment.fleet_address = front.address
        deployment.nodes.update(enrol_learners(self.settings, spec, link, tls))
        placed = len(placed_learners(spec.learners))
        actors.learners(link, None, placed)
        deployment.clusters = actors.clusters(link)

    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        for pid in runtime_info.get("pids", {}).values():
            if _is_ours(int(pid), _OWN_PROCESS_MARKERS):
                subprocesses.kill_group(int(pid), grace=3.0)

    # -- inference servers: `flops.serve` from the project's environment ----------

    def start_server(self, spec: ServerSpec) -> dict[str, Any]:
        if spec.environment is None:
            raise FlopsError("The local orchestrator serves from an environment.")
        log = spec.workdir / "logs" / "inference-server.log"
        env = tenant_env({"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        sandbox = sandbox_for(self.settings)
        # The model (pickles, its code) is the tenant's: served in its sandbox.
        sandbox.share(spec.model_dir, spec.identity)
        mounts = Mounts(read_only=(spec.environment, spec.model_dir))
        proc = subprocesses.spawn(
            sandbox.command(
                server_args(
                    spec.environment / "bin" / "python",
                    spec.model_dir,
                    spec.host,
                    spec.port,
                ),
                mounts,
                spec.identity,
            ),
            log_path=log,
            cwd=spec.workdir,
            env=env,
        )
        return {"pid": proc.pid, "log": str(log)}

    def server_status(self, handle: dict[str, Any]) -> ComponentStatus:
        pid = int(handle.get("pid", 0))
        if pid and _is_ours(pid, (_SERVER_MARKER,)):
            return ComponentStatus.running()
        return ComponentStatus.exited(None)  # not our child: no code to tell

    def server_logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        try:
            text = Path(handle["log"]).read_text(errors="replace")
        except (KeyError, OSError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_server(self, handle: dict[str, Any]) -> None:
        pid = int(handle.get("pid", 0))
        if pid and _is_ours(pid, (_SERVER_MARKER,)):
            subprocesses.kill_group(pid, grace=3.0)


def _is_ours(pid: int, markers: tuple[bytes, ...]) -> bool:
    """Only kill a recorded pid if it is still one of ours (pids get reused)."""
    if not subprocesses.pid_alive(pid):
        return False
    cmdline = subprocesses.pid_cmdline(pid)
    return any(marker in cmdline for marker in markers)

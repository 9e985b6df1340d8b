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
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flops import subprocesses
from flops.app.run_settings import node_config_args
from flops.errors import FlopsError
from flops.usercode import REPO_DIR_ENV
from flops.waiting import port_open, wait_until
from flops_management.orchestrators import fleet_front
from flops_management.orchestrators.base import (
    AGGREGATOR,
    FLEET_FRONT,
    SUPERLINK,
    SUPERNODE_SUFFIX,
    Deployment,
    DeploymentSpec,
    LearnerSpec,
    LogLine,
    Orchestrator,
    ServerSpec,
    has_joined,
    job_components,
    placed_learners,
)
from flops_management.orchestrators.flower_tls import issue_job_tls
from flops_management.orchestrators.host import stage_learner_data
from flops_management.orchestrators.local_commands import (
    THREAD_VARIABLES,
    actor_mounts,
    executor_args,
    learner_cores,
    limit_prefix,
    server_args,
    superlink_args,
    supernode_args,
)
from flops_management.orchestrators.log_file import LogFile
from flops_management.orchestrators.node_auth import (
    NODE_KEY_FILE,
    enrol_learners,
    key_folder,
)
from flops_management.orchestrators.topology import (
    Capability,
    Component,
    ComponentStatus,
)
from flops_management.sandbox import DEFAULT_PATH, Mounts, sandbox_for, tenant_env

READY_TIMEOUT_S = 60.0
_OWN_PROCESS_MARKERS = (b"flower-superlink", b"flower-supernode", b"flops.executor")
_SERVER_MARKER = b"flops.serve"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the deployment -----------------------------------------------------------


class LocalDeployment(Deployment):
    def __init__(self, control_address: str, learners: tuple[LearnerSpec, ...]) -> None:
        self._control = control_address
        self._components = job_components(learners, separate=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_files: dict[str, LogFile] = {}

    @property
    def control_address(self) -> str:
        return self._control

    def add(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.processes[name] = proc
        self.log_files[name] = LogFile(log)

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
    capabilities = frozenset({Capability.INFERENCE_SERVERS, Capability.JOINED_LEARNERS})
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

    def _env(
        self,
        spec: DeploymentSpec,
        flwr_home: Path,
        threads: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The actor's whole environment: nothing of the service's."""
        runtime = spec.runtime_environment or spec.environment
        assert runtime is not None
        env = tenant_env(
            {
                "PATH": os.pathsep.join([str(runtime / "bin"), DEFAULT_PATH]),
                "VIRTUAL_ENV": str(runtime),
                REPO_DIR_ENV: str(spec.repo_dir),
                "FLWR_HOME": str(flwr_home),
                "FLWR_TELEMETRY_ENABLED": "0",  # no phoning home from offline hosts
                "PYTHONUNBUFFERED": "1",
                # The environment is read-only to actors; the build compiled it.
                "PYTHONDONTWRITEBYTECODE": "1",
                **spec.env,
                **(extra or {}),
            }
        )
        if threads is not None:
            env.update({name: str(threads) for name in THREAD_VARIABLES})
        return env

    def submit(self, spec: DeploymentSpec) -> Deployment:
        if spec.environment is None:
            raise FlopsError("The local orchestrator needs the project's environment.")
        # Flower's side from FLOps' runtime environment (the user's environment
        # when none is given: it then holds both).
        bin_dir = (spec.runtime_environment or spec.environment) / "bin"
        logs = spec.workdir / "logs"
        link_port = free_port()
        link = f"127.0.0.1:{link_port}"
        data = stage_learner_data(self.settings, spec)
        deployment = LocalDeployment(link, spec.learners)
        try:
            self._start(spec, bin_dir, logs, link_port, deployment, data)
        except BaseException:
            deployment.cancel()
            raise
        return deployment

    def _start(
        self,
        spec: DeploymentSpec,
        bin_dir: Path,
        logs: Path,
        link_port: int,
        deployment: LocalDeployment,
        data: dict[str, Path],
    ) -> None:
        link = f"127.0.0.1:{link_port}"
        home = spec.workdir / "flwr"
        sandbox = sandbox_for(self.settings)
        assert spec.environment is not None
        worker_python = spec.environment / "bin" / "python"
        environments = tuple(
            dict.fromkeys(
                [spec.environment, spec.runtime_environment or spec.environment]
            )
        )

        front = fleet_front.plan(self.settings) if has_joined(spec.learners) else None
        tls = issue_job_tls(
            self.settings, spec.workdir, ["127.0.0.1", "localhost"], spec.identity
        )
        deployment.root_certificates = tls.ca_file if tls else None
        superlink_tls = tls.superlink if tls else None
        ca_tls = tls.ca if tls else None

        def start(
            name: str,
            args: list[str],
            threads: int | None = None,
            data: Path | None = None,
            extra: dict[str, str] | None = None,
            secrets: tuple[Path | None, ...] = (),
        ) -> subprocess.Popen[bytes]:
            flwr_home = home / name
            flwr_home.mkdir(parents=True, exist_ok=True)
            sandbox.give(flwr_home, spec.identity)
            env = self._env(spec, flwr_home, threads, extra)
            mounts = actor_mounts(
                environments,
                spec.repo_dir,
                flwr_home,
                data,
                tuple(p for p in secrets if p is not None),
            )
            log = logs / f"{name}.log"
            proc = subprocesses.spawn(
                sandbox.command(args, mounts, spec.identity),
                log_path=log,
                cwd=spec.workdir,
                env=env,
            )
            deployment.add(name, proc, log)
            return proc

        superlink = start(
            SUPERLINK,
            # Its state in its own Flower home, a file: it outlives the process.
            superlink_args(
                bin_dir, link_port, superlink_tls, home / SUPERLINK / "state.db"
            ),
            secrets=(superlink_tls,),
        )
        if not wait_until(
            lambda: port_open("127.0.0.1", link_port),
            READY_TIMEOUT_S,
            hopeless=lambda: superlink.poll() is not None,
        ):
            raise FlopsError(
                "The Flower SuperLink did not start:\n" + deployment.tail(SUPERLINK)
            )
        start(
            AGGREGATOR,
            executor_args(
                bin_dir,
                "aggregator",
                link,
                spec.repo_dir,
                spec.poll_interval,
                worker_python,
                spec.flower_app[0] if spec.flower_app else None,
                ca_tls,
            ),
            extra=spec.aggregator_env,
            secrets=(ca_tls,),
        )
        if front is not None:
            assert tls is not None  # Orchestrator.check refused plaintext
            log = logs / f"{FLEET_FRONT}.log"
            deployment.add(
                FLEET_FRONT,
                fleet_front.start(self.settings, spec.workdir, front, link, tls, log),
                log,
            )
            deployment.fleet_address = front.address
        deployment.nodes = enrol_learners(self.settings, spec, link, tls)
        cores = sorted(os.sched_getaffinity(0))
        placed = placed_learners(spec.learners)
        for index, learner in enumerate(placed):
            node_port = free_port()
            data_dir = data[learner.name]
            keys = key_folder(spec, learner.name) if deployment.nodes else None
            start(
                f"{learner.name}{SUPERNODE_SUFFIX}",
                supernode_args(
                    bin_dir,
                    link,
                    node_port,
                    node_config_args(data_dir, learner.name, index, len(spec.learners)),
                    ca_tls,
                    keys / NODE_KEY_FILE if keys else None,
                ),
                secrets=(ca_tls, keys),
            )
            pinned = learner_cores(spec.resources, index, cores)
            start(
                learner.name,
                limit_prefix(spec.resources, pinned)
                + executor_args(
                    bin_dir,
                    "learner",
                    f"127.0.0.1:{node_port}",
                    spec.repo_dir,
                    spec.poll_interval,
                    worker_python,
                    spec.flower_app[1] if spec.flower_app else None,
                ),
                threads=len(pinned) if pinned else max(1, len(cores) // len(placed)),
                data=data_dir,
            )

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

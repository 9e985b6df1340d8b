"""Starting one job's actors as sandboxed processes on this host (`local`).

`LocalActors` starts each kind of actor the way `local_commands` spells it:
a SuperLink (waited for until its port answers), an aggregator's executor, a
learner (its SuperNode and its executor), and in hierarchical mode a cluster
(its SuperLink, aggregator, uplink to the root and its learners). Every process
runs in the tenant's sandbox with its own Flower home and log, and is added to
the deployment as it starts, so that a failure part-way stops what did start.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flops import subprocesses
from flops.app.relay import relay_path
from flops.app.run_settings import node_config_args, uplink_node_config
from flops.errors import FlopsError
from flops.usercode import REPO_DIR_ENV
from flops.waiting import port_open, wait_until
from flops_management.orchestrators.base import (
    AGGREGATOR,
    SUPERLINK,
    SUPERNODE_SUFFIX,
    UPLINK,
    ClusterEndpoint,
    ClusterSpec,
    Deployment,
    DeploymentSpec,
    LearnerSpec,
    cluster_part,
    placed_learners,
)
from flops_management.orchestrators.flower_tls import JobTLS
from flops_management.orchestrators.local_commands import (
    THREAD_VARIABLES,
    actor_mounts,
    executor_args,
    learner_cores,
    limit_prefix,
    superlink_args,
    supernode_args,
)
from flops_management.orchestrators.log_file import LogFile
from flops_management.orchestrators.node_auth import (
    NODE_KEY_FILE,
    enrol_learners,
    enrol_nodes,
    key_folder,
)
from flops_management.orchestrators.ports import free_port
from flops_management.sandbox import DEFAULT_PATH, sandbox_for, tenant_env
from flops_management.settings import Settings

READY_TIMEOUT_S = 60.0
MAX_SOCKET_PATH = 107  # sun_path's 108 bytes, with its terminating NUL


class Processes(Deployment):
    """What `LocalActors` adds each process to (the local deployment)."""

    processes: dict[str, subprocess.Popen[bytes]]
    log_files: dict[str, LogFile]

    def add(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.processes[name] = proc
        self.log_files[name] = LogFile(log)


@dataclass
class LocalActors:
    settings: Settings
    spec: DeploymentSpec
    deployment: Processes
    bin_dir: Path  # FLOps' runtime environment's (Flower's side)
    data: dict[str, Path]  # learner -> its data folder
    tls: JobTLS | None

    def __post_init__(self) -> None:
        assert self.spec.environment is not None
        self.home = self.spec.workdir / "flwr"
        self.logs = self.spec.workdir / "logs"
        self.sandbox = sandbox_for(self.settings)
        self.worker_python = self.spec.environment / "bin" / "python"
        runtime = self.spec.runtime_environment or self.spec.environment
        self.environments = tuple(dict.fromkeys([self.spec.environment, runtime]))
        self.cores = sorted(os.sched_getaffinity(0))
        self.ca = self.tls.ca if self.tls else None
        self.partition = {
            learner.name: index for index, learner in enumerate(self.spec.learners)
        }

    def _env(
        self, flwr_home: Path, threads: int | None, extra: dict[str, str] | None
    ) -> dict[str, str]:
        """The actor's whole environment: nothing of the service's."""
        spec = self.spec
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

    def start(
        self,
        name: str,
        args: list[str],
        threads: int | None = None,
        data: Path | None = None,
        extra: dict[str, str] | None = None,
        secrets: tuple[Path | None, ...] = (),
        shared: tuple[Path, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """One sandboxed process; `shared`: folders it writes beside its own
        Flower home (a cluster's relay)."""
        flwr_home = self.home / name
        flwr_home.mkdir(parents=True, exist_ok=True)
        self.sandbox.give(flwr_home, self.spec.identity)
        mounts = actor_mounts(
            self.environments,
            self.spec.repo_dir,
            flwr_home,
            data,
            tuple(p for p in secrets if p is not None),
            shared,
        )
        log = self.logs / f"{name}.log"
        proc = subprocesses.spawn(
            self.sandbox.command(args, mounts, self.spec.identity),
            log_path=log,
            cwd=self.spec.workdir,
            env=self._env(flwr_home, threads, extra),
        )
        self.deployment.add(name, proc, log)
        return proc

    def superlink(self, name: str, port: int) -> str:
        """A SuperLink, its state in a file of its own Flower home (it outlives
        the process); its address once its port answers."""
        superlink_tls = self.tls.superlink if self.tls else None
        proc = self.start(
            name,
            superlink_args(
                self.bin_dir, port, superlink_tls, self.home / name / "state.db"
            ),
            secrets=(superlink_tls,),
        )
        if not wait_until(
            lambda: port_open("127.0.0.1", port),
            READY_TIMEOUT_S,
            hopeless=lambda: proc.poll() is not None,
        ):
            raise FlopsError(
                f"The Flower SuperLink {name} did not start:\n"
                + self.deployment.tail(name)
            )
        return f"127.0.0.1:{port}"

    def aggregator(
        self, name: str, link: str, shared: tuple[Path, ...] = ()
    ) -> subprocess.Popen[bytes]:
        app = self.spec.flower_app
        return self.start(
            name,
            executor_args(
                self.bin_dir,
                "aggregator",
                link,
                self.spec.repo_dir,
                self.spec.poll_interval,
                self.worker_python,
                app[0] if app else None,
                self.ca,
            ),
            extra=self.spec.aggregator_env,
            secrets=(self.ca,),
            shared=shared,
        )

    def learner(self, learner: LearnerSpec, link: str, placed: int) -> None:
        """Its SuperNode dialling `link`, then its executor (`placed`: how many
        learners share this host's cores)."""
        spec = self.spec
        node_port = free_port()
        data_dir = self.data[learner.name]
        index = self.partition[learner.name]
        keys = key_folder(spec, learner.name) if self.tls else None
        self.start(
            f"{learner.name}{SUPERNODE_SUFFIX}",
            supernode_args(
                self.bin_dir,
                link,
                node_port,
                node_config_args(data_dir, learner.name, index, len(spec.learners)),
                self.ca,
                keys / NODE_KEY_FILE if keys else None,
            ),
            secrets=(self.ca, keys),
        )
        pinned = learner_cores(spec.resources, index, self.cores)
        app = spec.flower_app
        self.start(
            learner.name,
            limit_prefix(spec.resources, pinned)
            + executor_args(
                self.bin_dir,
                "learner",
                f"127.0.0.1:{node_port}",
                spec.repo_dir,
                spec.poll_interval,
                self.worker_python,
                app[1] if app else None,
            ),
            threads=len(pinned) if pinned else max(1, len(self.cores) // placed),
            data=data_dir,
        )

    def learners(self, link: str, cluster: str | None, placed: int) -> None:
        for learner in self.spec.cluster_learners(cluster):
            self.learner(learner, link, placed)

    def relay_folder(self, index: int) -> Path:
        """The `index`-th cluster's relay folder: a short path, for a Unix
        socket's (at most 107 bytes on Linux)."""
        folder = self.spec.workdir / "r" / str(index)
        if len(relay_path(folder).encode()) > MAX_SOCKET_PATH:
            raise FlopsError(
                f"The relay socket {relay_path(folder)} is longer than the "
                f"{MAX_SOCKET_PATH} bytes Linux allows for a Unix socket's path.",
                hint="Set FLOPS_HOME to a shorter folder.",
            )
        return folder

    def cluster(
        self, cluster: ClusterSpec, index: int, root: str, placed: int
    ) -> ClusterEndpoint:
        """A cluster: its SuperLink and aggregator, its uplink dialling the root
        SuperLink `root` (registered there beforehand), its learners. The
        aggregator and the uplink's tasks share the relay folder (0700)."""
        name = cluster.name
        relay = self.relay_folder(index)
        link = self.superlink(cluster_part(name, SUPERLINK), free_port())
        relay.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sandbox.give(relay, self.spec.identity)
        self.aggregator(cluster_part(name, AGGREGATOR), link, shared=(relay,))
        uplink = cluster_part(name, UPLINK)
        node_port = free_port()
        keys = key_folder(self.spec, uplink) if self.tls else None
        self.start(
            uplink + SUPERNODE_SUFFIX,
            supernode_args(
                self.bin_dir,
                root,
                node_port,
                uplink_node_config(name, relay_path(relay)),
                self.ca,
                keys / NODE_KEY_FILE if keys else None,
            ),
            secrets=(self.ca, keys),
        )
        self.start(
            uplink,
            executor_args(
                self.bin_dir,
                "learner",
                f"127.0.0.1:{node_port}",
                self.spec.repo_dir,
                self.spec.poll_interval,
                self.worker_python,
            ),
            shared=(relay,),
        )
        self.deployment.nodes.update(
            enrol_learners(self.settings, self.spec, link, self.tls, name)
        )
        self.learners(link, name, placed)
        return ClusterEndpoint(control_address=link, relay=relay_path(relay))

    def clusters(self, root: str) -> dict[str, ClusterEndpoint]:
        """Every cluster of the job, their uplinks registered at the root first."""
        uplinks = [cluster_part(c.name, UPLINK) for c in self.spec.clusters]
        self.deployment.nodes.update(
            enrol_nodes(self.settings, self.spec, root, self.tls, uplinks)
        )
        placed = len(placed_learners(self.spec.learners))
        return {
            c.name: self.cluster(c, index, root, placed)
            for index, c in enumerate(self.spec.clusters)
        }

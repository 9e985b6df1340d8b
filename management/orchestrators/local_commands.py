"""The local orchestrator's command lines, built by pure functions.

Every process the `local` backend starts is described here as an argument list,
so what runs is tested by equality (tests/unit/test_local_orchestrator.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from flops import actor_commands
from flops.config import Resources
from flops_management.sandbox import Mounts

# Math libraries start a thread per core in every process; learners sharing a host
# would oversubscribe it. Each learner gets its share (or its pinned cores).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _beside(bin_dir: Path) -> actor_commands.Program:
    return lambda name: [str(bin_dir / name)]


def _tls(folder: Path | None) -> actor_commands.FlowerTLS | None:
    return None if folder is None else actor_commands.FlowerTLS(str(folder))


def superlink_args(
    bin_dir: Path, port: int, tls: Path | None, database: Path | None = None
) -> list[str]:
    """`tls`: the SuperLink's TLS folder (None: plaintext, a dev switch);
    `database`: its state's file (None: in memory)."""
    return actor_commands.superlink_args(
        _beside(bin_dir),
        "127.0.0.1",
        port,
        _tls(tls),
        None if database is None else str(database),
    )


def supernode_args(
    bin_dir: Path,
    superlink: str,
    port: int,
    node_config: str,
    tls: Path | None,
    node_key: Path | None = None,
) -> list[str]:
    """`tls`: a folder holding the CA certificate; `node_key`: the learner's
    registered key (both None: plaintext, a dev switch)."""
    return actor_commands.supernode_args(
        _beside(bin_dir),
        superlink,
        port,
        node_config,
        _tls(tls),
        None if node_key is None else str(node_key),
    )


def executor_args(
    bin_dir: Path,
    role: str,
    runtime_address: str,
    repo: Path,
    poll_interval: float,
    worker_python: Path,
    flower_app: str | None = None,
    tls: Path | None = None,
) -> list[str]:
    """The executor from FLOps' runtime environment (`bin_dir`), its model worker
    from the user's environment (`worker_python`); for a Flower app's component
    (`flower_app`), the executor from the user's environment, running it.
    `tls`: the CA's folder, for an executor that reaches the SuperLink."""
    if flower_app:
        return actor_commands.executor_args(
            str(worker_python),
            role,
            runtime_address,
            str(repo),
            poll_interval,
            flower_app=flower_app,
            tls=_tls(tls),
        )
    return actor_commands.executor_args(
        str(bin_dir / "python"),
        role,
        runtime_address,
        str(repo),
        poll_interval,
        worker_python=str(worker_python),
        tls=_tls(tls),
    )


def server_args(python: Path, model_dir: Path, host: str, port: int) -> list[str]:
    """An inference server for the model in `model_dir` (flops/serve.py)."""
    return [
        str(python),
        "-m",
        "flops.serve",
        "--model",
        str(model_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]


def actor_mounts(
    environments: tuple[Path, ...],
    repo: Path,
    flwr_home: Path,
    data: Path | None = None,
    secrets: tuple[Path, ...] = (),
    shared: tuple[Path, ...] = (),
) -> Mounts:
    """What one actor's sandbox holds: the environments (FLOps' runtime and the
    user's) and the repo read-only, a learner's data and its TLS and key
    folders (`secrets`) read-only, its own Flower home writable, and `shared`
    folders it writes with another actor (a cluster's relay)."""
    extra = (*(() if data is None else (data,)), *secrets)
    return Mounts(
        read_only=(*environments, repo, *extra),
        writable=(flwr_home, *shared),
        chdir=flwr_home,
    )


def limit_prefix(resources: Resources, cores: list[int] | None) -> list[str]:
    """`prlimit`/`taskset` in front of a learner's command, for its limits."""
    prefix: list[str] = []
    memory = resources.memory_bytes()
    if memory is not None:
        prefix += ["prlimit", f"--data={memory}", "--"]
    if cores:
        prefix += ["taskset", "--cpu-list", ",".join(map(str, cores))]
    return prefix


def learner_cores(
    resources: Resources, index: int, available: list[int]
) -> list[int] | None:
    """Whole cores for learner `index`, handed out round-robin over the host's."""
    if resources.cpu is None:
        return None
    count = min(max(1, math.ceil(resources.cpu)), len(available))
    start = (index * count) % len(available)
    return [available[(start + offset) % len(available)] for offset in range(count)]

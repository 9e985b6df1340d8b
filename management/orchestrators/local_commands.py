"""The local orchestrator's command lines, built by pure functions.

Every process the `local` backend starts is described here as an argument list,
so what runs is tested by equality (tests/unit/test_local_orchestrator.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from flops.config import Resources

# Math libraries start a thread per core in every process; learners sharing a host
# would oversubscribe it. Each learner gets its share (or its pinned cores).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def superlink_args(bin_dir: Path, port: int) -> list[str]:
    return [
        str(bin_dir / "flower-superlink"),
        "--insecure",
        "--isolation",
        "process",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def supernode_args(
    bin_dir: Path, superlink: str, port: int, node_config: str
) -> list[str]:
    return [
        str(bin_dir / "flower-supernode"),
        "--insecure",
        "--superlink",
        superlink,
        "--isolation",
        "process",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--node-config",
        node_config,
    ]


def executor_args(
    bin_dir: Path, role: str, runtime_address: str, repo: Path, poll_interval: float
) -> list[str]:
    return [
        str(bin_dir / "python"),
        "-m",
        "flops.executor",
        role,
        "--runtime-api-address",
        runtime_address,
        "--repo-dir",
        str(repo),
        "--poll-interval",
        str(poll_interval),
    ]


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

"""The Flower actors' command lines, shared by every orchestrator.

`program` is how the Flower entry point is started: a path beside the local
environment's interpreter (`local`), or `python3 -m flops.actor run NAME` inside
an image (whose packages are installed without console scripts).
"""

from __future__ import annotations

from collections.abc import Callable

Program = Callable[[str], list[str]]


def superlink_args(program: Program, host: str, port: int) -> list[str]:
    return [
        *program("flower-superlink"),
        "--insecure",
        "--isolation",
        "process",
        "--disable-runtime-dependency-installation",
        "--host",
        host,
        "--port",
        str(port),
    ]


def supernode_args(
    program: Program, superlink: str, port: int, node_config: str
) -> list[str]:
    return [
        *program("flower-supernode"),
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
    python: str,
    role: str,
    runtime_address: str,
    repo: str,
    poll_interval: float,
    worker_python: str | None = None,
    worker_path: str | None = None,
    flower_app: str | None = None,
) -> list[str]:
    """The executor (FLOps' runtime) and where its model worker runs from: the
    user's environment's interpreter, or this one with `worker_path` as its
    PYTHONPATH (an image's user-site folder). For a Flower app (`flower_app`, the
    role's component) the executor itself runs the app's code: `python` is then
    the user's environment's, and there is no model worker."""
    args = [
        python,
        "-m",
        "flops.executor",
        role,
        "--runtime-api-address",
        runtime_address,
        "--repo-dir",
        repo,
        "--poll-interval",
        str(poll_interval),
    ]
    if flower_app:
        return [*args, "--flower-app", flower_app]
    if worker_python:
        args += ["--worker-python", worker_python]
    if worker_path:
        args += ["--worker-path", worker_path]
    return args

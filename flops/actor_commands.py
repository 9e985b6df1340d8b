"""The Flower actors' command lines, shared by every orchestrator.

`program` is how the Flower entry point is started: a path beside the local
environment's interpreter (`local`), or `python3 -m flops.actor run NAME` inside
an image (whose packages are installed without console scripts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Program = Callable[[str], list[str]]

# A job's TLS files, as each actor finds them in its TLS folder: the
# installation CA (every actor), the SuperLink's certificate and key (the
# aggregator's folder only).
CA_FILE = "ca.crt"
SUPERLINK_CERT_FILE = "superlink.crt"
SUPERLINK_KEY_FILE = "superlink.key"


@dataclass(frozen=True)
class FlowerTLS:
    """An actor's TLS folder (as the actor sees it). None in its place means
    plaintext, which only `dev_insecure_flower` asks for."""

    folder: str

    def file(self, name: str) -> str:
        return f"{self.folder.rstrip('/')}/{name}"


def _server_tls(tls: FlowerTLS | None) -> list[str]:
    """TLS, and with it Flower's SuperNode authentication: only nodes whose key
    was registered through the Control API may pull tasks."""
    if tls is None:
        return ["--insecure"]
    return [
        "--ssl-ca-certfile",
        tls.file(CA_FILE),
        "--ssl-certfile",
        tls.file(SUPERLINK_CERT_FILE),
        "--ssl-keyfile",
        tls.file(SUPERLINK_KEY_FILE),
        "--enable-supernode-auth",
    ]


def _client_tls(tls: FlowerTLS | None) -> list[str]:
    return ["--insecure"] if tls is None else ["--root-certificates", tls.file(CA_FILE)]


def superlink_args(
    program: Program,
    host: str,
    port: int,
    tls: FlowerTLS | None,
    database: str | None = None,
) -> list[str]:
    """`database`: a file for the SuperLink's state (runs, registered nodes,
    messages), so it outlives the process; None: Flower's in-memory state."""
    return [
        *program("flower-superlink"),
        *_server_tls(tls),
        "--isolation",
        "process",
        "--disable-runtime-dependency-installation",
        *(["--database", database] if database else []),
        "--host",
        host,
        "--port",
        str(port),
    ]


def supernode_args(
    program: Program,
    superlink: str,
    port: int,
    node_config: str,
    tls: FlowerTLS | None,
    node_key: str | None = None,
) -> list[str]:
    """A SuperNode dialling the SuperLink (TLS, checked against the CA), known
    to it by `node_key` (the private half of its registered key); its own
    runtime API for the learner's executor stays on loopback."""
    if (tls is None) != (node_key is None):
        raise ValueError("a SuperNode has TLS and a node key, or neither")
    auth = [] if node_key is None else ["--auth-supernode-private-key", node_key]
    return [
        *program("flower-supernode"),
        *_client_tls(tls),
        *auth,
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
    tls: FlowerTLS | None = None,
) -> list[str]:
    """The executor (FLOps' runtime) and where its model worker runs from: the
    user's environment's interpreter, or this one with `worker_path` as its
    PYTHONPATH (an image's user-site folder). For a Flower app (`flower_app`, the
    role's component) the executor itself runs the app's code: `python` is then
    the user's environment's, and there is no model worker. `tls`: the
    aggregator's executor reaches the SuperLink's runtime API over TLS (a
    learner's executor talks to its SuperNode on loopback, in plaintext)."""
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
    if tls is not None:
        args += ["--root-certificates", tls.file(CA_FILE)]
    if flower_app:
        return [*args, "--flower-app", flower_app]
    if worker_python:
        args += ["--worker-python", worker_python]
    if worker_path:
        args += ["--worker-path", worker_path]
    return args

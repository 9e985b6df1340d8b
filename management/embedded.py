"""The embedded stack behind `flops up`: MLflow, the management API, an OCI
registry and (without a Docker Engine) Podman's Docker-compatible service.

Each runs as a daemon with its pid in FLOPS_HOME/run and its output in
FLOPS_HOME/logs. `up` is idempotent: a service that already runs and answers its
health check is reused. MLflow takes 30-100 s to become healthy on 2 cores, so it
is started first and waited for last. The registry and Podman are optional: a
host without them still trains with the `local` orchestrator, and `up` says what
to install for images.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from flops import subprocesses
from flops.errors import FlopsError, ServiceUnavailableError
from flops_management import mlflow_access
from flops_management.auth import ensure_local_token
from flops_management.images.registry import registry_config
from flops_management.settings import Settings

MLFLOW_READY_TIMEOUT_S = 300.0
API_READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 45.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    health_url: str
    args: list[str]
    ready_timeout: float
    # Optional services are skipped (with a note) when their program is missing.
    needs: str | None = None
    # Health over a unix socket (Podman's API) instead of TCP.
    socket: Path | None = None


@dataclass(frozen=True)
class ServiceState:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool


def _bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else subprocesses.which(name)


def mlflow_args(settings: Settings) -> list[str]:
    store = settings.mlflow_dir
    return [
        _bin("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--serve-artifacts",
        # Nobody sees anything without a grant (flops_management.mlflow_access).
        "--app-name",
        "basic-auth",
    ]


def api_args() -> list[str]:
    return [sys.executable, "-m", "flops_management", "serve"]


def registry_args(config_file: Path) -> list[str]:
    return ["docker-registry", "serve", str(config_file)]


def podman_service_args(socket_path: Path) -> list[str]:
    # --time=0: serve until stopped (the default exits after 5 s idle).
    return ["podman", "system", "service", "--time=0", f"unix://{socket_path}"]


def services(settings: Settings) -> list[Service]:
    mlflow_url = f"http://127.0.0.1:{settings.mlflow_port}"
    todo = [
        Service(
            "mlflow",
            mlflow_url,
            f"{mlflow_url}/health",
            mlflow_args(settings),
            MLFLOW_READY_TIMEOUT_S,
        ),
        Service(
            "api",
            settings.api_url,
            f"{settings.api_url}/health",
            api_args(),
            API_READY_TIMEOUT_S,
        ),
    ]
    if settings.registry is None:  # a configured registry runs elsewhere
        registry_url = f"http://127.0.0.1:{settings.registry_port}"
        todo.append(
            Service(
                "registry",
                registry_url,
                f"{registry_url}/v2/",
                registry_args(settings.registry_dir / "config.yml"),
                API_READY_TIMEOUT_S,
                needs="docker-registry",
            )
        )
    if settings.docker_url == f"unix://{settings.podman_socket}":
        todo.append(
            Service(
                "podman",
                settings.docker_url,
                "http://d/_ping",
                podman_service_args(settings.podman_socket),
                API_READY_TIMEOUT_S,
                needs="podman",
                socket=settings.podman_socket,
            )
        )
    return todo


def available(service: Service) -> bool:
    return service.needs is None or shutil.which(service.needs) is not None


def _pidfile(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"{name}.pid"


# What a service's command line contains; a recorded pid without it was reused.
_MARKERS = {
    "mlflow": b"mlflow",
    "api": b"flops_management",
    "registry": b"docker-registry",
    "podman": b"podman",
}


def _read_pid(settings: Settings, name: str) -> int | None:
    """The service's process group if any of it still runs; None if it is gone or
    its pid was reused.

    A service is its process group, not one pid: MLflow's server forks workers
    that keep serving its port when only the recorded leader is killed.
    """
    try:
        pid = int(_pidfile(settings, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    members = [pid] if subprocesses.pid_alive(pid) else []
    members += [m for m in subprocesses.group_members(pid) if m != pid]
    if not any(_MARKERS[name] in subprocesses.pid_cmdline(m) for m in members):
        return None
    return pid


def _healthy(service: Service) -> bool:
    transport = httpx.HTTPTransport(uds=str(service.socket)) if service.socket else None
    try:
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get(service.health_url).status_code == 200
    except httpx.HTTPError:
        return False


def _port_taken(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return False
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def status(settings: Settings) -> list[ServiceState]:
    states = []
    for service in filter(available, services(settings)):
        pid = _read_pid(settings, service.name)
        running = pid is not None
        states.append(
            ServiceState(
                service.name,
                service.url,
                pid if running else None,
                running,
                running and _healthy(service),
            )
        )
    return states


def _service_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "FLOPS_HOME": str(settings.home),
        "FLOPS_PROFILE": settings.profile,
        "FLOPS_API_PORT": str(settings.api_port),
        "FLOPS_MLFLOW_PORT": str(settings.mlflow_port),
        "FLOPS_MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PYTHONUNBUFFERED": "1",
    }


def _start(settings: Settings, service: Service, progress: Progress) -> None:
    pid = _read_pid(settings, service.name)
    if pid is not None:
        progress(f"{service.name}: already running (pid {pid})")
        return
    if _port_taken(service.url):
        raise FlopsError(
            f"Cannot start {service.name}: another program uses {service.url}.",
            hint="Stop it, or choose other ports: FLOPS_API_PORT, FLOPS_MLFLOW_PORT.",
        )
    settings.mlflow_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if service.name == "registry":
        config = settings.registry_dir / "config.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(registry_config(settings))
    if service.socket is not None:
        service.socket.parent.mkdir(parents=True, exist_ok=True)
        service.socket.unlink(missing_ok=True)  # left by a killed service
    log = settings.logs_dir / f"{service.name}.log"
    env = _service_env(settings)
    if service.name == "mlflow":
        env.update(mlflow_access.server_environment(settings))
    proc = subprocesses.spawn(service.args, log_path=log, env=env)
    _pidfile(settings, service.name).parent.mkdir(parents=True, exist_ok=True)
    _pidfile(settings, service.name).write_text(str(proc.pid))
    progress(f"{service.name}: started (pid {proc.pid}), log {log}")


def _wait_healthy(settings: Settings, service: Service, progress: Progress) -> None:
    started = time.monotonic()
    last_note = started
    while not _healthy(service):
        if _read_pid(settings, service.name) is None:
            log = settings.logs_dir / f"{service.name}.log"
            tail = (
                "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                if log.exists()
                else ""
            )
            raise ServiceUnavailableError(
                f"{service.name} exited while starting:\n{tail}"
            )
        now = time.monotonic()
        if now - started > service.ready_timeout:
            raise ServiceUnavailableError(
                f"{service.name} did not answer at {service.health_url} within "
                f"{service.ready_timeout:.0f}s; see its log in {settings.logs_dir}"
            )
        if now - last_note >= 10:
            progress(
                f"{service.name}: waiting to become healthy ({now - started:.0f}s)"
            )
            last_note = now
        time.sleep(0.5)
    progress(f"{service.name}: healthy at {service.url}")


def up(settings: Settings, progress: Progress = lambda _msg: None) -> dict[str, str]:
    """Start what is not running, wait until everything answers; return the URLs."""
    if settings.profile != "local":
        raise FlopsError(
            "`flops up` runs the local profile; production uses docker compose."
        )
    settings.ensure_home()
    ensure_local_token(settings)
    todo = []
    for service in services(settings):
        if available(service):
            todo.append(service)
        else:
            progress(
                f"{service.name}: skipped, `{service.needs}` is not installed "
                "(needed for images and the docker orchestrator; `make system` "
                "installs it)"
            )
    for service in todo:
        _start(settings, service, progress)
    for service in todo:
        _wait_healthy(settings, service, progress)
    return {service.name: service.url for service in todo}


def down(settings: Settings, progress: Progress = lambda _msg: None) -> None:
    """Stop the API first (it stops running jobs), then MLflow."""
    for service in reversed(services(settings)):
        pid = _read_pid(settings, service.name)
        if pid is not None:
            subprocesses.kill_group(pid, grace=STOP_GRACE_S)
            progress(f"{service.name}: stopped (pid {pid})")
        else:
            progress(f"{service.name}: not running")
        _pidfile(settings, service.name).unlink(missing_ok=True)

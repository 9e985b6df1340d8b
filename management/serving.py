"""Inference servers: a project's registered model, served on its orchestrator.

`deploy` starts the server (a container of the inference image, or `flops.serve`
from the project's environment on the local orchestrator), waits until its
`/ping` answers and records it on the project with its URL. A server outlives
its job; `undeploy` stops it. The service reconciles what it recorded with what
runs when it starts, and stops the servers that live and die with it (the local
orchestrator's processes) when it stops.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from flops.errors import ConflictError, FlopsError
from flops_management.images.registry import ImageInfo
from flops_management.models import InferenceServer, Project, ServerStatus, utcnow
from flops_management.orchestrators import Orchestrator, get_orchestrator
from flops_management.orchestrators.base import ServerSpec
from flops_management.orchestrators.ports import free_port
from flops_management.sandbox import Identity
from flops_management.settings import Settings
from flops_management.store import Store

logger = logging.getLogger(__name__)

Log = Callable[[str], None]
READY_TIMEOUT_S = 180.0
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - names, not a bind


def server_url(host: str, port: int) -> str:
    """Where users reach a server published on `host:port`."""
    name = socket.getfqdn() if host in WILDCARDS else host
    return f"http://{name}:{port}"


def _ping_url(host: str, port: int) -> str:
    """Where this service checks it: loopback when published on every address."""
    return f"http://{'127.0.0.1' if host in WILDCARDS else host}:{port}/ping"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    orchestrator: Orchestrator,
    handle: dict[str, object],
    ping: str,
    timeout: float = READY_TIMEOUT_S,
) -> None:
    """Until `/ping` answers; FlopsError with the server's last lines if it exits
    or stays silent for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not _answers(ping):
        state = orchestrator.server_status(handle)
        if not state.alive or time.monotonic() > deadline:
            why = str(state) if not state.alive else f"no answer in {timeout:.0f}s"
            raise FlopsError(
                f"The inference server did not come up ({why}):\n"
                + orchestrator.server_logs(handle),
                hint="The model must load with mlflow.pyfunc in the serving "
                "environment; its requirements.txt names what it needs.",
            )
        time.sleep(0.5)


def deploy(
    settings: Settings,
    store: Store,
    project: Project,
    orchestrator_name: str,
    *,
    model_uri: str,
    model_dir: Path,
    workdir: Path,
    environment: Path | None,
    image: ImageInfo | None,
    port: int | None,
    log: Log,
    identity: Identity | None = None,
) -> InferenceServer:
    """Serve the model on the orchestrator; replaces a server the project has."""
    orchestrator = get_orchestrator(orchestrator_name, settings)
    if project.server is not None and project.server.status == ServerStatus.RUNNING:
        log(f"replacing the project's inference server at {project.server.url}")
        _stop(settings, project.server)
    host = settings.inference_host
    port = port or free_port()
    spec = ServerSpec(
        project_id=project.id,
        workdir=workdir,
        model_dir=model_dir,
        environment=environment,
        image=image.reference if image is not None else None,
        host=host,
        port=port,
        identity=identity,
    )
    handle = orchestrator.start_server(spec)
    server = InferenceServer(
        url=server_url(host, port),
        orchestrator=orchestrator_name,
        model_uri=model_uri,
        image=image.pinned if image is not None else None,
        handle=handle,
    )
    # Recorded before it answers: a service that dies meanwhile still finds it.
    store.update_project(project.id, server=server)
    log(f"inference server starting on the {orchestrator_name} orchestrator")
    try:
        wait_ready(orchestrator, handle, _ping_url(host, port))
    except BaseException as err:
        orchestrator.stop_server(handle)
        _record_stopped(store, project.id, server, f"did not start: {err}")
        raise
    log(f"inference server ready at {server.url} (POST {server.url}/invocations)")
    return server


def _stop(settings: Settings, server: InferenceServer) -> None:
    get_orchestrator(server.orchestrator, settings).stop_server(server.handle)


def _record_stopped(
    store: Store, project_id: str, server: InferenceServer, reason: str
) -> InferenceServer:
    stopped = server.model_copy(
        update={
            "status": ServerStatus.STOPPED,
            "stopped_at": utcnow(),
            "reason": reason,
        }
    )
    store.update_project(project_id, server=stopped)
    return stopped


def undeploy(settings: Settings, store: Store, tenant: str, project_id: str) -> Project:
    """Stop the project's inference server (the user asked)."""
    project = store.get_project(project_id, tenant)
    server = project.server
    if server is None or server.status != ServerStatus.RUNNING:
        raise ConflictError(
            f"Project {project_id} has no running inference server.",
            hint="post_training.deploy_inference_server = true deploys one.",
        )
    _stop(settings, server)
    _record_stopped(store, project_id, server, "stopped by the user")
    store.append_event(project_id, "inference_server_stopped", {"url": server.url})
    return store.get_project(project_id, tenant)


def reconcile(settings: Settings, store: Store) -> None:
    """At start-up: servers recorded running that no longer run are marked so."""
    for project in store.running_servers():
        server = project.server
        assert server is not None
        try:
            state = get_orchestrator(server.orchestrator, settings).server_status(
                server.handle
            )
        except FlopsError as err:
            logger.warning("Cannot tell the state of %s's server: %s", project.id, err)
            continue
        if not state.alive:
            _record_stopped(store, project.id, server, f"found {state}")


def stop_with_service(settings: Settings, store: Store, reason: str) -> None:
    """At shutdown: stop the servers that are processes of this service."""
    for project in store.running_servers():
        server = project.server
        assert server is not None
        orchestrator = get_orchestrator(server.orchestrator, settings)
        if orchestrator.servers_outlive_service:
            continue
        try:
            orchestrator.stop_server(server.handle)
        except Exception:  # shutdown goes on for the other servers
            logger.exception("Stopping the inference server of %s failed", project.id)
            continue
        _record_stopped(store, project.id, server, reason)
        store.append_event(
            project.id,
            "inference_server_stopped",
            {"url": server.url, "reason": reason},
        )

"""/api/projects: submit, list, show, cancel, follow a project's events, and stop
its inference server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from flops_management import projects, serving
from flops_management.api.deps import (
    PrincipalDep,
    ProjectIdDep,
    RunnerDep,
    SettingsDep,
    StoreDep,
)
from flops_management.api.schemas import (
    AUTHENTICATED,
    EventOut,
    ProjectOut,
    ProjectSubmission,
    errors,
    schema_body,
    schema_ref,
)
from flops_management.models import Event

router = APIRouter(prefix="/api/projects", tags=["projects"])
# A project's routes: its id (or a unique prefix) may be unknown or ambiguous.
BY_ID = (*AUTHENTICATED, 404, 409)

STREAM_POLL_S = 0.5
KEEPALIVE_S = 15.0


@router.post(
    "",
    status_code=201,
    response_model=ProjectOut,
    responses=errors(*AUTHENTICATED, 400, 403, 413),
    # Read as a mapping so that an invalid config is recorded as a rejected
    # project (projects.submit); documented as what it must be.
    openapi_extra={"requestBody": schema_body(ProjectSubmission)},
)
def submit_project(
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
    runner: RunnerDep,
    body: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Submit an ML repo for federated training (the project config, `repo` set)."""
    return projects.submit(settings, store, runner, principal, body).public()


@router.get("", response_model=list[ProjectOut], responses=errors(*AUTHENTICATED))
def list_projects(
    principal: PrincipalDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return [p.public() for p in store.list_projects(principal.tenant, limit)]


@router.get("/{project_id}", response_model=ProjectOut, responses=errors(*BY_ID))
def show_project(
    project_id: ProjectIdDep, principal: PrincipalDep, store: StoreDep
) -> dict[str, Any]:
    return store.get_project(project_id, principal.tenant).public()


@router.post(
    "/{project_id}/cancel",
    status_code=202,
    response_model=ProjectOut,
    responses=errors(*BY_ID),
)
def cancel_project(
    project_id: ProjectIdDep,
    principal: PrincipalDep,
    runner: RunnerDep,
    store: StoreDep,
) -> dict[str, Any]:
    runner.cancel(principal.tenant, project_id)
    return store.get_project(project_id, principal.tenant).public()


@router.delete(
    "/{project_id}/server", response_model=ProjectOut, responses=errors(*BY_ID)
)
def stop_server(
    project_id: ProjectIdDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
) -> dict[str, Any]:
    """Stop the project's inference server; 409 when none runs."""
    return serving.undeploy(settings, store, principal.tenant, project_id).public()


def _sse(event: Event) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


@router.get(
    "/{project_id}/events",
    response_model=None,
    responses={
        **errors(*BY_ID),
        200: {
            "description": "The events (JSON), or with follow=true a stream of them",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": schema_ref(EventOut),
                    }
                },
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "description": "Server-sent events: `event` is the "
                        "event's type, `data` the event as JSON",
                        "properties": {
                            "event": {"type": "string"},
                            "data": {"type": "string"},
                            "id": {"type": "string"},
                        },
                    }
                },
            },
        },
    },
)
async def project_events(
    project_id: ProjectIdDep,
    request: Request,
    principal: PrincipalDep,
    store: StoreDep,
    after: Annotated[int, Query(ge=0, description="Only events with seq > after")] = 0,
    follow: Annotated[
        bool, Query(description="Stream (server-sent events) until the project ends")
    ] = False,
) -> list[dict[str, Any]] | StreamingResponse:
    await run_in_threadpool(store.get_project, project_id, principal.tenant)
    if not follow:
        found = await run_in_threadpool(store.list_events, project_id, after)
        return [event.model_dump(mode="json") for event in found]

    async def stream() -> AsyncIterator[str]:
        last, idle = after, 0.0
        while True:
            batch = await run_in_threadpool(store.list_events, project_id, last)
            for event in batch:
                last = event.seq
                yield _sse(event)
            if batch:
                idle = 0.0
                continue
            project = await run_in_threadpool(
                store.get_project, project_id, principal.tenant
            )
            if project.status.finished:
                final = project.model_dump_json(include={"id", "status", "error"})
                yield f"event: end\ndata: {final}\n\n"
                return
            if await request.is_disconnected():
                return
            idle += STREAM_POLL_S
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )

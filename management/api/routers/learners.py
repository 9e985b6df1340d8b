"""Learners that join from their owners' machines (flops_management.enrolment).

The project's owner (a tenant token) makes enrolment tokens, lists who joined
and revokes a learner under /api/projects/{id}. A device authenticates with its
enrolment token alone under /api/join/{id}: it joins, then polls for its
assignment until the job has registered its key.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Request

from flops.errors import AuthError
from flops_management import enrolment
from flops_management.api.deps import PrincipalDep, ProjectIdDep, SettingsDep, StoreDep
from flops_management.api.schemas import (
    AUTHENTICATED,
    AssignmentOut,
    EnrolmentOut,
    EnrolmentRequest,
    JoinedLearnerOut,
    JoinOut,
    JoinRequest,
    errors,
)
from flops_management.models import Enrolment

router = APIRouter(tags=["learners"])
BY_ID = (*AUTHENTICATED, 404, 409)


def _out(record: Enrolment) -> JoinedLearnerOut:
    if record.revoked_at is not None:
        status = "revoked"
    elif record.node_id is not None:
        status = "registered"
    elif record.learner is not None:
        status = "joined"
    else:
        status = "waiting"
    return JoinedLearnerOut(
        learner=record.learner,
        status=status,
        address=record.address,
        joined_at=record.joined_at,
        last_seen=record.last_seen,
        expires_at=record.expires_at,
        node_id=record.node_id,
    )


@router.post(
    "/api/projects/{project_id}/enrolments",
    status_code=201,
    responses=errors(*BY_ID, 400),
)
def create_enrolments(
    project_id: ProjectIdDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
    request: EnrolmentRequest,
) -> EnrolmentOut:
    """Enrolment tokens for the project's joined learners, one per learner."""
    project = store.get_project(project_id, principal.tenant)
    ttl = timedelta(seconds=settings.enrolment_ttl)
    issued = enrolment.enrol(settings, store, project, request.learners, ttl)
    return EnrolmentOut(
        project_id=project_id, tokens=issued.tokens, expires_at=issued.expires_at
    )


@router.get("/api/projects/{project_id}/learners", responses=errors(*BY_ID))
def list_learners(
    project_id: ProjectIdDep, principal: PrincipalDep, store: StoreDep
) -> list[JoinedLearnerOut]:
    """The project's enrolment tokens and the learners that joined with them."""
    store.get_project(project_id, principal.tenant)
    return [_out(record) for record in enrolment.learners(store, project_id)]


@router.delete(
    "/api/projects/{project_id}/learners/{learner}", responses=errors(*BY_ID)
)
def revoke_learner(
    project_id: ProjectIdDep, learner: str, principal: PrincipalDep, store: StoreDep
) -> JoinedLearnerOut:
    """Revoke a joined learner: the running job cuts it off."""
    store.get_project(project_id, principal.tenant)
    return _out(enrolment.revoke(store, project_id, learner))


def _enrolment_token(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError(
            "Missing enrolment token.",
            hint="Send 'Authorization: Bearer <enrolment token>'.",
        )
    return authorization[7:].strip()


EnrolmentHeader = Annotated[str | None, Header(alias="Authorization")]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/api/join/{project_id}", status_code=201, responses=errors(*BY_ID, 400, 403)
)
def join(
    project_id: str,
    body: JoinRequest,
    store: StoreDep,
    request: Request,
    authorization: EnrolmentHeader = None,
) -> JoinOut:
    """A device joins the project as a learner (its enrolment token as bearer)."""
    record = enrolment.join(
        store,
        project_id,
        _enrolment_token(authorization),
        body.name,
        body.public_key,
        _client(request),
    )
    assert record.learner is not None
    return JoinOut(project_id=project_id, learner=record.learner)


@router.get("/api/join/{project_id}/assignment", responses=errors(*BY_ID, 403))
def assignment(
    project_id: str,
    settings: SettingsDep,
    store: StoreDep,
    request: Request,
    authorization: EnrolmentHeader = None,
) -> AssignmentOut:
    """Where the device's learner dials, once the job registered its key."""
    found = enrolment.assignment(
        settings, store, project_id, _enrolment_token(authorization), _client(request)
    )
    if found is None:
        return AssignmentOut(
            ready=False,
            message="Joined; waiting for the project's job to start and register "
            "this learner.",
        )
    fields = dataclasses.asdict(found)
    fields["data_tags"] = list(found.data_tags)
    return AssignmentOut(ready=True, message="Registered with the job.", **fields)

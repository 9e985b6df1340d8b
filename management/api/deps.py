"""Request dependencies, in one place (as in the FastAPI full-stack template)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from flops_management import auth, projects
from flops_management.auth import Principal
from flops_management.pipeline.runner import JobRunner
from flops_management.settings import Settings
from flops_management.store import Store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


def get_principal(
    store: StoreDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return auth.authenticate(store, authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_project_id(project_id: str, principal: PrincipalDep, store: StoreDep) -> str:
    """The path's project id, or a unique prefix of one, as the full id."""
    return projects.resolve_id(store, principal.tenant, project_id)


ProjectIdDep = Annotated[str, Depends(get_project_id)]

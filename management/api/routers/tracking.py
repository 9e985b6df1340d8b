"""/api/mlflow: a tenant's own MLflow credentials."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from flops_management.api.deps import PrincipalDep, SettingsDep, StoreDep
from flops_management.api.schemas import AUTHENTICATED, errors
from flops_management.mlflow_access import MlflowAccess

router = APIRouter(prefix="/api/mlflow", tags=["mlflow"])


class MlflowCredentialsOut(BaseModel):
    tracking_uri: str
    username: str
    password: str


@router.post("/credentials", status_code=201, responses=errors(*AUTHENTICATED, 503))
async def issue_credentials(
    principal: PrincipalDep, settings: SettingsDep, store: StoreDep
) -> MlflowCredentialsOut:
    """A new password for your MLflow user (the previous one stops working). It
    reads your projects' experiments, runs and registered models, nothing else;
    this response is the only place the password appears."""
    access = MlflowAccess(settings, store)
    credentials = await run_in_threadpool(
        access.issue_tenant_credentials, principal.tenant
    )
    return MlflowCredentialsOut(
        tracking_uri=settings.tracking_uri,
        username=credentials.username,
        password=credentials.password,
    )

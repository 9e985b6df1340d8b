"""/health (no auth) and /api/info."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi

import flops
from flops_management.api import schemas
from flops_management.api.deps import PrincipalDep, SettingsDep
from flops_management.api.schemas import AUTHENTICATED, Health, Info, errors
from flops_management.orchestrators import orchestrator_names

router = APIRouter(tags=["health"])


@router.get("/health", responses=errors(500))
def health() -> Health:
    return Health(status="ok", version=flops.__version__)


@router.get("/api/info", responses=errors(*AUTHENTICATED))
def info(principal: PrincipalDep, settings: SettingsDep) -> Info:
    return Info(
        version=flops.__version__,
        tenant=principal.tenant,
        admin=principal.admin,
        profile=settings.profile,
        mlflow_tracking_uri=settings.tracking_uri,
        orchestrators=orchestrator_names(),
    )


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The API's OpenAPI document, made once (installed as `app.openapi`)."""
    if app.openapi_schema is None:
        app.openapi_schema = schemas.complete(
            get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
        )
    document: dict[str, Any] = app.openapi_schema
    return document


@router.get("/api/openapi.json", include_in_schema=False)
def openapi_schema(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    return build_openapi(request.app)

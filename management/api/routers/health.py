"""/health (no auth) and /api/info."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.utils import get_openapi

import flops
from flops_management.api.deps import PrincipalDep, SettingsDep
from flops_management.orchestrators import orchestrator_names

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "version": flops.__version__}


@router.get("/api/info")
def info(principal: PrincipalDep, settings: SettingsDep) -> dict[str, Any]:
    return {
        "version": flops.__version__,
        "tenant": principal.tenant,
        "admin": principal.admin,
        "profile": settings.profile,
        "mlflow_tracking_uri": settings.tracking_uri,
        "orchestrators": orchestrator_names(),
    }


@router.get("/api/openapi.json", include_in_schema=False)
def openapi_schema(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    app = request.app
    if app.openapi_schema is None:
        app.openapi_schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
    schema: dict[str, Any] = app.openapi_schema
    return schema

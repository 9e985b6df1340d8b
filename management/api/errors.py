"""FlopsError -> HTTP, at the API's edge only."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from flops.errors import FlopsError

logger = logging.getLogger(__name__)


def error_body(err: FlopsError) -> dict[str, object]:
    error: dict[str, object] = {
        "type": type(err).__name__,
        "message": err.message,
        "hint": err.hint,
        **err.detail,  # e.g. the project a rejected submission was recorded as
    }
    return {"error": error}


def _allowed(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Every method some route serves at this path (Starlette names only the
    first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "__none__"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        """Routing's own answers (no such route, method not allowed) in FLOps'
        error shape; a 405 lists every method the path serves."""
        body = {
            "error": {"type": "HTTPError", "message": str(err.detail), "hint": None}
        }
        headers = dict(err.headers or {})
        if err.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(app, dict(request.scope)))
        return JSONResponse(body, status_code=err.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        """FastAPI's own validation (paths, queries, typed bodies), in FLOps'
        error shape: one line per problem, naming where it is."""
        lines = []
        for problem in err.errors():
            where = ".".join(str(part) for part in problem.get("loc", ()))
            lines.append(f"- {where}: {problem.get('msg')}")
        body = {
            "error": {
                "type": "ConfigError",
                "message": "Invalid request:\n" + "\n".join(lines),
                "hint": None,
            }
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(FlopsError)
    async def flops_error(_: Request, err: FlopsError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.http_status == 401 else None
        return JSONResponse(
            error_body(err), status_code=err.http_status, headers=headers
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:
        logger.exception("Unhandled error")
        body = {
            "error": {
                "type": "InternalError",
                "message": f"{type(err).__name__}: {err}",
                "hint": None,
            }
        }
        return JSONResponse(body, status_code=500)

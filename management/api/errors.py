"""FlopsError -> HTTP, at the API's edge only."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def install(app: FastAPI) -> None:
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

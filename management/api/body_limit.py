"""Request bodies bounded before any route reads them: 413 naming the limit.

A pure ASGI middleware: a declared Content-Length over the limit is answered at
once; a body without one (chunked) is counted as it streams and cut off when it
passes the limit. Data uploads (`PUT /api/data/...`) have their own, larger,
limit and are streamed to disk by their route; every other body is JSON and
small.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PREFIX = "/api/data/"


class BodyTooLarge(BaseException):
    """Raised from `receive` past the limit. Not an Exception: FastAPI turns any
    Exception while it reads a body into a 400, and this must reach the
    middleware as itself."""


def _error(limit: int, setting: str) -> bytes:
    body = {
        "error": {
            "type": "PayloadTooLargeError",
            "message": f"The request body is larger than this service's limit of "
            f"{limit} bytes ({setting}).",
            "hint": None,
        }
    }
    return json.dumps(body).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_request: int, max_upload: int) -> None:
        self.app = app
        self.max_request = max_request
        self.max_upload = max_upload

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if scope["method"] == "PUT" and scope["path"].startswith(UPLOAD_PREFIX):
            return self.max_upload, "FLOPS_MAX_UPLOAD_BYTES"
        return self.max_request, "FLOPS_MAX_REQUEST_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, limit, setting)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, limit, setting)


async def _reject(send: Send, limit: int, setting: str) -> None:
    body = _error(limit, setting)
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})

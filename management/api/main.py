"""The FastAPI application: store, runner and token bootstrap in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import flops
from flops_management import auth, mlflow_access, serving
from flops_management.api import errors
from flops_management.api.body_limit import BodyLimitMiddleware
from flops_management.api.routers import (
    data,
    health,
    learners,
    projects,
    tokens,
    tracking,
)
from flops_management.pipeline.runner import JobRunner
from flops_management.settings import Settings
from flops_management.store import open_store

logger = logging.getLogger(__name__)

SERVICE_STOPPED = "stopped with the management service: flops down"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_home()
        mlflow_access.use_admin_credentials(settings)
        store = open_store(settings.store)
        auth.bootstrap(settings, store)
        runner = JobRunner(settings, store)
        app.state.settings, app.state.store, app.state.runner = settings, store, runner
        runner.recover()
        serving.reconcile(settings, store)
        logger.info(
            "FLOps management %s ready (store %s)", flops.__version__, settings.store
        )
        try:
            yield
        finally:
            runner.shutdown()
            serving.stop_with_service(settings, store, SERVICE_STOPPED)
            store.close()

    app = FastAPI(
        title="FLOps management API",
        version=flops.__version__,
        description="Submit ML repositories for federated learning and follow them.",
        lifespan=lifespan,
        # Every route but /health needs a token, the schema too: it is served by
        # health.openapi_schema below instead of FastAPI's public default.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.openapi = lambda: health.build_openapi(app)  # type: ignore[method-assign]
    errors.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_request=settings.max_request_bytes,
        max_upload=settings.max_upload_bytes,
    )
    for router in (
        health.router,
        projects.router,
        learners.router,
        data.router,
        tokens.router,
        tracking.router,
    ):
        app.include_router(router)
    return app

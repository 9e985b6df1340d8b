"""/api/data: push Parquet data under a tag, split into learner partitions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from flops.errors import ConfigError, NotFoundError, PayloadTooLargeError
from flops_management import datasets, limits
from flops_management.api.deps import PrincipalDep, SettingsDep, StoreDep
from flops_management.api.schemas import AUTHENTICATED, DatasetOut, errors

router = APIRouter(prefix="/api/data", tags=["data"])


@router.put(
    "/{tag}",
    status_code=201,
    response_model=DatasetOut,
    responses=errors(*AUTHENTICATED, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The Parquet file's bytes",
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
)
async def push_data(
    tag: str,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
    partitions: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> dict[str, Any]:
    """Body: the Parquet file's bytes (application/octet-stream), streamed to disk."""
    datasets.check_tag_name(tag)
    limits.check_partitions(partitions, settings)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    limit = settings.max_upload_bytes
    with tempfile.NamedTemporaryFile(dir=settings.data_dir, suffix=".upload") as upload:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"The upload is larger than this service's limit of {limit} "
                    "bytes (FLOPS_MAX_UPLOAD_BYTES)."
                )
            upload.write(chunk)
        upload.flush()
        if size == 0:
            raise ConfigError("The upload is empty: send the Parquet file as the body.")
        dataset = await run_in_threadpool(
            datasets.push,
            settings,
            store,
            principal.tenant,
            tag,
            Path(upload.name),
            partitions,
        )
    return dataset.model_dump(mode="json")


@router.get("", response_model=list[DatasetOut], responses=errors(*AUTHENTICATED))
def list_data(principal: PrincipalDep, store: StoreDep) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json") for d in store.list_datasets(principal.tenant)]


@router.get("/{tag}", response_model=DatasetOut, responses=errors(*AUTHENTICATED, 404))
def show_data(tag: str, principal: PrincipalDep, store: StoreDep) -> dict[str, Any]:
    dataset = store.get_dataset(principal.tenant, tag)
    if dataset is None:
        raise NotFoundError(f"Data tag '{tag}' not found.")
    return dataset.model_dump(mode="json")

"""/api/data: push Parquet data under a tag, split into learner partitions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from flops.errors import ConfigError, NotFoundError
from flops_management import datasets
from flops_management.api.deps import PrincipalDep, SettingsDep, StoreDep

router = APIRouter(prefix="/api/data", tags=["data"])

MAX_UPLOAD_BYTES = 4 * 1024**3


@router.put("/{tag}", status_code=201)
async def push_data(
    tag: str,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    store: StoreDep,
    partitions: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> dict[str, Any]:
    """Body: the Parquet file's bytes (application/octet-stream)."""
    datasets.check_tag_name(tag)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.data_dir, suffix=".upload") as upload:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise ConfigError(f"Upload larger than {MAX_UPLOAD_BYTES} bytes.")
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


@router.get("")
def list_data(principal: PrincipalDep, store: StoreDep) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json") for d in store.list_datasets(principal.tenant)]


@router.get("/{tag}")
def show_data(tag: str, principal: PrincipalDep, store: StoreDep) -> dict[str, Any]:
    dataset = store.get_dataset(principal.tenant, tag)
    if dataset is None:
        raise NotFoundError(f"Data tag '{tag}' not found.")
    return dataset.model_dump(mode="json")

"""Project stores: pick one by URL scheme (sqlite:///path or mongodb://...)."""

from __future__ import annotations

from pathlib import Path

from flops.errors import ConfigError
from flops_management.store.base import Store


def open_store(url: str) -> Store:
    if url.startswith("sqlite:///"):
        from flops_management.store.sqlite import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from flops_management.store.mongo import MongoStore

        return MongoStore(url)
    raise ConfigError(
        f"Unsupported store URL {url!r}: use sqlite:///PATH or mongodb://HOST/DB."
    )


__all__ = ["Store", "open_store"]

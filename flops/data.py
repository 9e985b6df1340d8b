"""The learner data plane: local Parquet partitions, per data tag.

A learner's data directory holds one folder per data tag with Parquet files in it
(`<data_dir>/<tag>/*.parquet`). The ClientApp tells this module which directory and
tags belong to the current learner; `load_dataset()` (and its `flops_utils`
compatibility alias) turns them into one Hugging Face `datasets.Dataset`.

`flops data push` splits one Parquet file into K partitions, one per learner
(flops_management.data_split).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from flops.errors import FlopsError

if TYPE_CHECKING:
    import datasets

DATA_DIR_ENV = "FLOPS_DATA_DIR"
DATA_TAGS_ENV = "FLOPS_DATA_TAGS"


@dataclass(frozen=True)
class LearnerData:
    """Where this learner's data lives and which tags the project trains on."""

    data_dir: Path
    tags: tuple[str, ...]


_current: LearnerData | None = None


def set_current(data: LearnerData | None) -> None:
    """Called by the ClientApp before it hands control to the user's code."""
    global _current
    _current = data


def current() -> LearnerData:
    """The current learner's data; outside a learner, from FLOPS_DATA_DIR/_TAGS."""
    if _current is not None:
        return _current
    data_dir = os.environ.get(DATA_DIR_ENV)
    tags = [t for t in os.environ.get(DATA_TAGS_ENV, "").split(",") if t]
    if not data_dir or not tags:
        raise FlopsError(
            "load_dataset() was called outside a FLOps learner.",
            hint=f"To run the repo locally, set {DATA_DIR_ENV} to a folder with "
            f"<tag>/*.parquet and {DATA_TAGS_ENV} to the tags (comma-separated).",
        )
    return LearnerData(Path(data_dir), tuple(tags))


def tag_files(data_dir: Path, tag: str) -> list[Path]:
    return sorted((data_dir / tag).glob("*.parquet"))


def load_table(data: LearnerData) -> pa.Table:
    """All of the learner's Parquet data for the project's tags, as one table."""
    if not data.tags:
        raise FlopsError(
            "The project has no data tags, so this learner has no data to load.",
            hint="Submit with --data-tag TAG (after `flops data push FILE --tag TAG`).",
        )
    tables = []
    for tag in data.tags:
        files = tag_files(data.data_dir, tag)
        if not files:
            raise FlopsError(
                f"This learner has no data for tag '{tag}' in {data.data_dir / tag}.",
                hint=f"Push it with `flops data push FILE --tag {tag} --partitions N`.",
            )
        tables += [pq.read_table(path) for path in files]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as err:
        raise FlopsError(
            f"The Parquet files for tags {', '.join(data.tags)} have incompatible "
            f"schemas: {err}"
        ) from err


def load_dataset(data: LearnerData | None = None) -> datasets.Dataset:
    """The learner's local data as a Hugging Face `datasets.Dataset` (in memory)."""
    import datasets
    from datasets.table import InMemoryTable

    return datasets.Dataset(InMemoryTable(load_table(data or current())))

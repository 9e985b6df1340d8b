"""Splitting a pushed Parquet file into one partition per learner, streamed.

The upload is read batch by batch and each batch's rows go, shuffled, to the
partition a seeded permutation gives them, so memory holds one batch and one
small assignment array (2 bytes a row), never the file: a 4 GiB upload costs
what a 64k-row batch costs. The split is IID and near-equal, as mock data for K
learners should be; real learners bring their own data.

Partitions are written to a fresh staging folder and swapped in under a lock
per tag, so concurrent pushes of one tag take turns and a failed push leaves
the previous partitions intact.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flops.errors import ConfigError
from flops_management.file_lock import file_lock

BATCH_ROWS = 65_536
PARTITION_MODE = 0o640  # the service's; read by its tenant's group in sandboxes


@dataclass(frozen=True)
class Split:
    rows: int
    columns: list[str]
    files: list[Path]


def assignments(rows: int, partitions: int, seed: int = 0) -> np.ndarray:
    """Partition number of every row: a seeded shuffle cut into near-equal parts."""
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    if rows < partitions:
        raise ConfigError(f"Cannot split {rows} rows into {partitions} partitions.")
    order = np.random.default_rng(seed).permutation(rows)
    part_of = np.empty(rows, dtype=np.uint16 if partitions < 2**16 else np.uint32)
    for index, chunk in enumerate(np.array_split(order, partitions)):
        part_of[chunk] = index
    return part_of


def _open(source: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(f"The upload is not a readable Parquet file: {err}") from err


def _write(parquet: pq.ParquetFile, staging: Path, partitions: int, seed: int) -> int:
    rows = int(parquet.metadata.num_rows)
    part_of = assignments(rows, partitions, seed)
    # Rows also leave each batch shuffled: a learner that trains in file order
    # (SGD's partial_fit) must not see them sorted as they were uploaded.
    rng = np.random.default_rng(seed + 1)
    schema = parquet.schema_arrow
    writers = [
        pq.ParquetWriter(staging / f"partition-{index}.parquet", schema)
        for index in range(partitions)
    ]
    try:
        offset = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            mine = part_of[offset : offset + batch.num_rows]
            offset += batch.num_rows
            for index in np.unique(mine):
                chosen = np.flatnonzero(mine == index)
                rng.shuffle(chosen)
                writers[int(index)].write_batch(batch.take(pa.array(chosen)))
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(f"The upload is not a readable Parquet file: {err}") from err
    finally:
        for writer in writers:
            writer.close()
    return rows


def split_parquet(source: Path, dest: Path, partitions: int, seed: int = 0) -> Split:
    """Write `source` as `dest/partition-<i>.parquet`, replacing the old split."""
    parquet = _open(source)
    with file_lock(dest.with_name(f".{dest.name}.lock")):  # one push of a tag
        staging = Path(
            tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent)
        )
        try:
            rows = _write(parquet, staging, partitions, seed)
            for path in staging.iterdir():
                path.chmod(PARTITION_MODE)
            if dest.exists():
                retired = Path(
                    tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent)
                )
                dest.replace(retired / dest.name)
                staging.rename(dest)
                shutil.rmtree(retired)
            else:
                staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    files = sorted(dest.glob("partition-*.parquet"))
    return Split(rows, list(parquet.schema_arrow.names), files)

"""Data tags: pushed Parquet data split into one partition per learner.

Partitions live in FLOPS_HOME/data/<tenant>/<tag>/partition-<i>.parquet; the store
keeps each tag's metadata. On the local orchestrator, learner i trains on
partition i of every tag the project names.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flops.config import TAG_PATTERN
from flops.errors import ConfigError
from flops_management.data_split import split_parquet
from flops_management.models import Dataset
from flops_management.settings import Settings
from flops_management.store import Store


def tag_dir(settings: Settings, tenant: str, tag: str) -> Path:
    return settings.data_dir / tenant / tag


def check_tag_name(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise ConfigError(f"Data tag {tag!r} must be letters, digits, '.', '_' or '-'.")
    return tag


def push(
    settings: Settings,
    store: Store,
    tenant: str,
    tag: str,
    source: Path,
    partitions: int,
) -> Dataset:
    """Split a Parquet file into partitions and record the tag."""
    check_tag_name(tag)
    dest = tag_dir(settings, tenant, tag)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    split = split_parquet(source, dest, partitions)
    dataset = Dataset(
        tenant=tenant,
        tag=tag,
        partitions=partitions,
        rows=split.rows,
        columns=split.columns,
        bytes=source.stat().st_size,
    )
    store.put_dataset(dataset)
    return dataset


def check_tags(store: Store, tenant: str, tags: list[str], learners: int) -> None:
    """Every tag exists for the tenant with a partition for every learner
    FLOps places (`learners`; joined learners bring their own data)."""
    if learners == 0:
        return
    problems = []
    for tag in tags:
        dataset = store.get_dataset(tenant, tag)
        if dataset is None:
            problems.append(
                f"data tag '{tag}' does not exist; push it with "
                f"`flops data push FILE --tag {tag} --partitions {learners}`"
            )
        elif dataset.partitions < learners:
            problems.append(
                f"data tag '{tag}' has {dataset.partitions} partitions but {learners} "
                f"learners were requested; push it again with --partitions {learners}"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def learner_partition(settings: Settings, tenant: str, tag: str, index: int) -> Path:
    return tag_dir(settings, tenant, tag) / f"partition-{index}.parquet"


def snapshot_partition(
    settings: Settings, tenant: str, tag: str, index: int, dest: Path
) -> Path:
    """Give a learner partition `index` of a tag, as it is now.

    A hard link, not a symlink: a later `flops data push` of the same tag swaps
    in new files, and a running job must keep training on the data it started
    with. (A copy where the job folder is on another file system.)
    """
    source = learner_partition(settings, tenant, tag, index)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / source.name
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flops import data
from flops.errors import ConfigError, FlopsError
from flops_management.data_split import split_parquet


def table(rows: int) -> pa.Table:
    return pa.table(
        {"image": [[float(i)] * 4 for i in range(rows)], "label": list(range(rows))}
    )


def write_partitions(rows: pa.Table, dest: Path, partitions: int) -> list[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = dest.parent / f"upload-{uuid.uuid4().hex}.parquet"
    pq.write_table(rows, source, row_group_size=7)  # several batches and groups
    return split_parquet(source, dest, partitions, seed=1).files


def test_partitions_cover_every_row_once(tmp_path: Path) -> None:
    files = write_partitions(table(101), tmp_path / "t", 4)
    parts = [pq.read_table(path) for path in files]
    assert [p.num_rows for p in parts] == [26, 25, 25, 25]
    labels = sorted(label for p in parts for label in p.column("label").to_pylist())
    assert labels == list(range(101))
    assert {path.stat().st_mode & 0o777 for path in files} == {0o640}


def test_too_few_rows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot split 2 rows into 3 partitions"):
        write_partitions(table(2), tmp_path / "t", 3)


def test_write_partitions_replaces_the_previous_split(tmp_path: Path) -> None:
    dest = tmp_path / "digits"
    write_partitions(table(10), dest, 5)
    files = write_partitions(table(10), dest, 2)
    assert [f.name for f in files] == ["partition-0.parquet", "partition-1.parquet"]
    assert sorted(p.name for p in dest.iterdir()) == [
        "partition-0.parquet",
        "partition-1.parquet",
    ]
    assert not list(tmp_path.glob(".digits.*[!k]"))  # no staging left, the lock


def test_concurrent_pushes_of_one_tag_take_turns(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    dest = tmp_path / "digits"
    with ThreadPoolExecutor(4) as pool:
        done = list(
            pool.map(lambda n: write_partitions(table(8 + n), dest, 2), range(4))
        )
    assert all(len(files) == 2 for files in done)
    rows = sum(pq.read_table(path).num_rows for path in dest.iterdir())
    assert rows in {8, 9, 10, 11}


def test_load_dataset_joins_tags_and_keeps_numpy_behaviour(tmp_path: Path) -> None:
    for tag, rows in (("a", 3), ("b", 2)):
        (tmp_path / tag).mkdir()
        pq.write_table(table(rows), tmp_path / tag / "part.parquet")
    dataset = data.load_dataset(data.LearnerData(tmp_path, ("a", "b")))
    dataset.set_format("numpy")
    # Oakestra FLOps repos reshape a column directly: it must be an ndarray.
    assert dataset["image"].reshape((len(dataset), -1)).shape == (5, 4)


def test_compat_load_dataset_reads_the_current_learner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flops_utils.ml_repo_building_blocks import load_dataset

    (tmp_path / "digits").mkdir()
    pq.write_table(table(4), tmp_path / "digits" / "p.parquet")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(data.DATA_TAGS_ENV, "digits")
    assert len(load_dataset()) == 4
    data.set_current(data.LearnerData(tmp_path, ("other",)))
    try:
        with pytest.raises(FlopsError, match="no data for tag 'other'"):
            load_dataset()
    finally:
        data.set_current(None)


def test_outside_a_learner_the_error_says_how_to_run_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(FlopsError, match="outside a FLOps learner") as err:
        data.load_dataset()
    assert data.DATA_DIR_ENV in str(err.value)


def test_unreadable_parquet(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match="is not a readable Parquet file"):
        split_parquet(tmp_path / "x.parquet", tmp_path / "t", 2)


def test_a_scheduled_learner_keeps_its_data_when_the_tag_is_pushed_again(
    tmp_path: Path,
) -> None:
    from flops_management import datasets
    from flops_management.settings import Settings

    settings = Settings(home=tmp_path)
    dest = datasets.tag_dir(settings, "local", "digits")
    write_partitions(table(10), dest, 2)
    snap = datasets.snapshot_partition(settings, "local", "digits", 1, tmp_path / "job")
    write_partitions(table(4), dest, 2)  # pushed again while the job runs
    assert pq.read_table(snap).num_rows == 5
    assert (
        pq.read_table(
            datasets.learner_partition(settings, "local", "digits", 1)
        ).num_rows
        == 2
    )


def test_host_backends_stage_each_learners_partitions_in_the_job_folder(
    tmp_path: Path,
) -> None:
    from flops_management import datasets
    from flops_management.orchestrators.base import DeploymentSpec, LearnerSpec
    from flops_management.orchestrators.host import stage_learner_data
    from flops_management.orchestrators.topology import StoredPartitions
    from flops_management.settings import Settings

    settings = Settings(home=tmp_path)
    write_partitions(table(10), datasets.tag_dir(settings, "t1", "digits"), 2)
    spec = DeploymentSpec(
        job_id="j",
        workdir=tmp_path / "job",
        repo_dir=tmp_path / "repo",
        learners=(
            LearnerSpec("learner-0", StoredPartitions("t1", ("digits",), 0)),
            LearnerSpec("learner-1", StoredPartitions("t1", ("digits",), 1)),
            LearnerSpec("learner-2", None),  # the repo loads its own data
        ),
    )
    folders = stage_learner_data(settings, spec)
    rows = {
        name: sum(pq.read_table(f).num_rows for f in folder.glob("digits/*.parquet"))
        for name, folder in folders.items()
    }
    assert rows == {"learner-0": 5, "learner-1": 5, "learner-2": 0}
    assert folders["learner-2"].is_dir()
    assert all(f.is_relative_to(tmp_path / "job") for f in folders.values())

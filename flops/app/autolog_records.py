"""What a learner's own MLflow calls logged, into that learner's run.

The model worker captures what the user's code logs in a task (autolog, or
`mlflow.log_metric` by hand; see `flops.worker.capture`) and the reply carries
it. Here it lands in the learner's child run, as a user reading MLflow expects:

- metrics under their own names at `step = round` (the last value of each in
  the task; a per-epoch history is kept whole in the round's `logged.json`);
- params once (autolog logs the same estimator params every round; a value
  that changes later is kept in `logged.json`, since MLflow params are
  immutable); tags as they are;
- artifacts, the models autolog logged included, under
  `autolog/round-<N>/<phase>/` (`runs/<i>/...` and `models/<name>-<id>/...`),
  loadable as `runs:/<learner run>/autolog/round-<N>/fit/models/<...>`.

A learner's reply is untrusted: the tar is size-checked and extracted with
Python's `data` filter (no absolute paths, links out or devices).
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord

from flops.errors import TrainingError

# What the aggregator unpacks from one reply, at most (a decompression bomb
# stops here, not on the disk).
UNPACKED_LIMIT_BYTES = 256 * 1024 * 1024


def _last_values(metrics: list[list[Any]]) -> dict[str, float]:
    latest: dict[str, tuple[int, int, float]] = {}
    for key, value, step, timestamp in metrics:
        mark = (int(step), int(timestamp))
        if key not in latest or mark >= latest[key][:2]:
            latest[key] = (*mark, float(value))
    return {key: value for key, (_, _, value) in latest.items()}


def _extract(blob: bytes, into: Path) -> None:
    with tempfile.TemporaryFile() as raw:
        raw.write(blob)
        raw.seek(0)
        with tarfile.open(fileobj=raw, mode="r:gz") as tar:
            members = tar.getmembers()
            if sum(m.size for m in members) > UNPACKED_LIMIT_BYTES:
                raise TrainingError(
                    "the artifacts unpack to more than "
                    f"{UNPACKED_LIMIT_BYTES // 2**20} MiB"
                )
            tar.extractall(into, members=members, filter="data")


def log_task(
    client: Any,
    run_id: str,
    server_round: int,
    phase: str,
    record: ConfigRecord,
    params_logged: dict[str, str],
) -> str | None:
    """Log one task's capture into the learner's run `run_id`; returns the
    capture's note (artifacts left out) if it has one.

    `params_logged` holds the params already on that run, and is updated.
    """
    from mlflow.entities import Metric, Param, RunTag

    logged = json.loads(str(record["logged"]))
    runs: list[dict[str, Any]] = list(logged.get("runs", []))
    captured = {run["run_id"] for run in runs}
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    params: list[Param] = []
    tags: list[RunTag] = []
    for run in runs:
        # Nested runs (a GridSearchCV's candidates) keep their name as a prefix.
        prefix = "" if run.get("parent") not in captured else f"{run['name']}."
        for key, value in _last_values(run.get("metrics", [])).items():
            metrics.append(Metric(prefix + key, value, now, server_round))
        for key, value in run.get("params", {}).items():
            if prefix + key not in params_logged:
                params_logged[prefix + key] = str(value)
                params.append(Param(prefix + key, str(value)[:6000]))
        tags += [RunTag(prefix + k, str(v)) for k, v in run.get("tags", {}).items()]
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    with tempfile.TemporaryDirectory(prefix="flops-logged-") as tmp:
        folder = Path(tmp)
        (folder / "logged.json").write_text(json.dumps(logged, indent=1))
        if "artifacts" in record:
            _extract(bytes(record["artifacts"]), folder)  # type: ignore[arg-type]
        client.log_artifacts(run_id, tmp, f"autolog/round-{server_round}/{phase}")
    note = logged.get("note")
    return str(note) if note else None

"""What a learner's own MLflow calls logged, into that learner's run.

The model worker captures what the user's code logs in a task (autolog, or
`mlflow.log_metric` by hand; see `flops.worker.capture`) and the reply carries
it. Here it lands in the learner's child run, as a user reading MLflow expects:

- metrics under their own names at `step = round` (the last value of each in
  the task; a per-epoch history is kept whole in the round's `logged.json`);
- params once (autolog logs the same estimator params every round; a value
  that changes later is kept in `logged.json`, since MLflow params are
  immutable); tags as they are;
- what the learner logged into a task's runs after its reply (MLflow's post-fit
  metrics and plots, `flops.worker.deferred`), shipped in a later reply, at
  that task's round and in its folder;
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
from dataclasses import dataclass, field
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


@dataclass
class LearnerLog:
    """What is already on one learner's run: its params (immutable in MLflow),
    and the task (round, phase) each captured run came from, for what the
    learner logs into that run after its reply (`later`)."""

    params: dict[str, str] = field(default_factory=dict)
    origins: dict[str, tuple[int, str]] = field(default_factory=dict)


def _entities(
    runs: list[dict[str, Any]], step: int, log: LearnerLog
) -> tuple[list[Any], list[Any], list[Any]]:
    from mlflow.entities import Metric, Param, RunTag

    captured = {run["run_id"] for run in runs}
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    params: list[Param] = []
    tags: list[RunTag] = []
    for run in runs:
        # Nested runs (a GridSearchCV's candidates) keep their name as a prefix.
        prefix = "" if run.get("parent") not in captured else f"{run['name']}."
        for key, value in _last_values(run.get("metrics", [])).items():
            metrics.append(Metric(prefix + key, value, now, step))
        for key, value in run.get("params", {}).items():
            if prefix + key not in log.params:
                log.params[prefix + key] = str(value)
                params.append(Param(prefix + key, str(value)[:6000]))
        tags += [RunTag(prefix + k, str(v)) for k, v in run.get("tags", {}).items()]
    return metrics, params, tags


def log_task(
    client: Any,
    run_id: str,
    server_round: int,
    phase: str,
    record: ConfigRecord,
    log: LearnerLog,
) -> str | None:
    """Log one task's capture into the learner's run `run_id`; returns what
    was left out, if anything.

    `log` holds what is already on that run, and is updated. What the learner
    logged after earlier replies (`later`) lands under the round it belongs to.
    """
    logged = json.loads(str(record["logged"]))
    runs: list[dict[str, Any]] = list(logged.get("runs", []))
    for run in runs:
        log.origins[str(run["run_id"])] = (server_round, phase)
    metrics, params, tags = _entities(runs, server_round, log)
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    notes = [str(logged["note"])] if logged.get("note") else []
    with tempfile.TemporaryDirectory(prefix="flops-logged-") as tmp:
        folder = Path(tmp) / "task"
        folder.mkdir()
        if "artifacts" in record:
            _extract(bytes(record["artifacts"]), folder)  # type: ignore[arg-type]
        later = Path(tmp) / "later"
        if (folder / "later").is_dir():
            (folder / "later").rename(later)
        if runs or notes or any(folder.iterdir()):
            task = {k: v for k, v in logged.items() if k != "later"}
            (folder / "logged.json").write_text(json.dumps(task, indent=1))
            client.log_artifacts(
                run_id, str(folder), f"autolog/round-{server_round}/{phase}"
            )
        for i, entry in enumerate(logged.get("later", [])):
            notes += _log_later(client, run_id, entry, later / str(i), log)
    return "; ".join(notes) or None


def _log_later(
    client: Any, run_id: str, entry: dict[str, Any], files: Path, log: LearnerLog
) -> list[str]:
    """What the learner logged into earlier tasks' runs after replying."""
    runs: list[dict[str, Any]] = list(entry.get("runs", []))
    known = [log.origins[r["run_id"]] for r in runs if r.get("run_id") in log.origins]
    if not known:
        return [f"content for {len(runs)} run(s) of no earlier task left out"]
    server_round, phase = known[0]
    metrics, params, tags = _entities(runs, server_round, log)
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    if files.is_dir():
        client.log_artifacts(
            run_id, str(files), f"autolog/round-{server_round}/{phase}"
        )
    return []

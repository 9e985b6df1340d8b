"""MLflow's post-fit content, logged after the task has replied.

MLflow 2's `mlflow.sklearn.autolog()` computes, inside every `fit()`, the
training metrics (precision, recall, F1, ROC AUC) and three plots (confusion
matrix, ROC and precision-recall curves at 175 dpi): over a second per fit for a
model that trains in 0.03 s (`bench/autolog.py`). None of it changes the model,
so in a learner's task it need not hold up the reply. While a task runs,
`mlflow.sklearn.utils._log_specialized_estimator_content` (which MLflow's
`_log_estimator_content` looks up by name on each call) is replaced by one that
queues the call on a copy of the fitted estimator; once the Flower side has
hung up, the task's process runs the queued calls into the task's own capture
store, and spools what they added in the worker's folder. The learner's next
reply ships it, and the aggregator logs it under the round it belongs to
(`flops.app.autolog_records`). The final round's evaluate waits for what is
still being computed, so nothing autolog logs is dropped.

Spool layout (the worker's folder): `deferred/<pid>.pending` while a task's
process has queued content, `deferred/<pid>-<k>/` (`content.json`, `files/`)
for each call into the user's code that postponed some, once it is written
(renamed into place, so a reader never sees half of it).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import inspect
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flops.worker.capture import Capture, describe_run, local_path

logger = logging.getLogger(__name__)

TARGET_MODULE = "mlflow.sklearn.utils"
TARGET = "_log_specialized_estimator_content"
# How long the final round's evaluate waits for content still being computed.
FINAL_WAIT_S = 120.0


@dataclass
class _Queue:
    """What this task's process postponed, each call with the capture store its
    run is in (a connection may make more than one call into the user's code)."""

    capture: Capture | None = None  # the current call's, while it may postpone
    # The open `<pid>.pending` marker, locked while content is owed: the lock
    # goes with the process, so a killed one never keeps a reader waiting.
    marker: int | None = None
    calls: list[tuple[Capture, Callable[..., Any], inspect.BoundArguments]] = field(
        default_factory=list
    )


_queue = _Queue()


def spool_folder(worker_folder: Path) -> Path:
    return worker_folder / "deferred"


def _postponing(original: Callable[..., Any], spool: Path) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def postponed(*args: Any, **kwargs: Any) -> dict[str, float]:
        if _queue.capture is None:  # outside a task that may postpone
            result: dict[str, float] = original(*args, **kwargs)
            return result
        bound = signature.bind(*args, **kwargs)
        # The content is of the model as this fit() left it, not as it ends.
        bound.arguments["fitted_estimator"] = copy.deepcopy(
            bound.arguments["fitted_estimator"]
        )
        if _queue.marker is None:
            spool.mkdir(parents=True, exist_ok=True)
            # Locked before it shows under its name: a reader that finds a
            # marker unlocked takes it for a dead process's and removes it.
            hidden = spool / f".{os.getpid()}.pending"
            _queue.marker = os.open(hidden, os.O_CREAT | os.O_WRONLY, 0o600)
            fcntl.flock(_queue.marker, fcntl.LOCK_EX)
            hidden.rename(spool / f"{os.getpid()}.pending")
        _queue.calls.append((_queue.capture, original, bound))
        # `_log_estimator_content` only warns on an empty result when there
        # are no labels; the metrics themselves are logged later.
        return {}

    postponed._flops_original = original  # type: ignore[attr-defined]
    return postponed


@contextlib.contextmanager
def postponing(capture: Capture, spool: Path) -> Iterator[None]:
    """Within this block, MLflow's post-fit content is queued for `run_queued`
    (when the repo's MLflow has the function this relies on)."""
    module = sys.modules.get(TARGET_MODULE)
    original = getattr(module, TARGET, None)
    if module is None or original is None:
        yield
        return
    if not hasattr(original, "_flops_original"):
        setattr(module, TARGET, _postponing(original, spool))
    _queue.capture = capture
    try:
        yield
    finally:
        _queue.capture = None
        if any(queued is capture for queued, _, _ in _queue.calls):
            capture.keep()  # the queued calls log into it after the reply


def run_queued(spool: Path) -> None:
    """Run what this task's process postponed and spool what it added, one
    entry per call that postponed it (each ships to its own round and phase);
    called once the task's conversation is over."""
    if not _queue.calls:
        return
    pid = os.getpid()
    captures = list({id(c): c for c, _, _ in _queue.calls}.values())
    try:
        for k, capture in enumerate(captures):
            calls = [(f, b) for c, f, b in _queue.calls if c is capture]
            work = spool / f".{pid}-{k}.tmp"
            try:
                runs = _run_into(capture, calls, work / "files")
                work.mkdir(parents=True, exist_ok=True)
                (work / "content.json").write_text(json.dumps({"runs": runs}))
                work.rename(spool / f"{pid}-{k}")
            except Exception:
                logger.exception("MLflow's post-fit content could not be logged")
                shutil.rmtree(work, ignore_errors=True)
    finally:
        (spool / f"{pid}.pending").unlink(missing_ok=True)
        if _queue.marker is not None:
            os.close(_queue.marker)
            _queue.marker = None
        for capture in captures:
            capture.discard()
        _queue.calls.clear()


def _run_into(
    capture: Capture,
    calls: list[tuple[Callable[..., Any], inspect.BoundArguments]],
    files: Path,
) -> list[dict[str, Any]]:
    """Run the calls into `capture`'s store; what they added to its runs (the
    new files copied under `files/runs/<index in the reply>/`)."""
    with capture.reopened() as mlflow:
        client = mlflow.MlflowClient(capture.uri)
        run_ids = sorted({bound.arguments["run_id"] for _, bound in calls})
        before = {r: describe_run(client, client.get_run(r)) for r in run_ids}
        roots = {r: local_path(client.get_run(r).info.artifact_uri) for r in run_ids}
        old_files = {r: _files(roots[r]) for r in run_ids}
        _run_calls(calls)
        for run_id in run_ids:
            index = capture.indexes.get(run_id)
            for path in sorted(_files(roots[run_id]) - old_files[run_id]):
                target = files / "runs" / str(index) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(roots[run_id] / path, target)
        return [_added(client, r, before[r], capture.indexes.get(r)) for r in run_ids]


def _run_calls(calls: list[tuple[Callable[..., Any], inspect.BoundArguments]]) -> None:
    from mlflow.utils.autologging_utils.client import MlflowAutologgingQueueingClient

    for original, bound in calls:
        autologging_client = MlflowAutologgingQueueingClient()
        bound.arguments["autologging_client"] = autologging_client
        try:
            original(*bound.args, **bound.kwargs)
        finally:
            autologging_client.flush(synchronous=True)


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def _added(
    client: Any, run_id: str, before: dict[str, Any], index: int | None
) -> dict[str, Any]:
    after = describe_run(client, client.get_run(run_id))
    seen = {tuple(m) for m in before["metrics"]}
    return {
        **after,
        "index": index,
        "metrics": [m for m in after["metrics"] if tuple(m) not in seen],
        "params": {
            k: v for k, v in after["params"].items() if k not in before["params"]
        },
        "tags": {k: v for k, v in after["tags"].items() if k not in before["tags"]},
    }


@dataclass(frozen=True)
class Spooled:
    """One earlier task's postponed content, ready to ship."""

    folder: Path
    content: dict[str, Any]

    @property
    def files(self) -> Path:
        return self.folder / "files"


def take(spool: Path, wait_s: float = 0.0) -> list[Spooled]:
    """The content earlier tasks spooled (removed from the spool: the caller
    ships it, or it is gone). With `wait_s`, first wait that long at most for
    tasks still computing theirs."""
    if not spool.is_dir():
        return []
    if wait_s > 0:
        _wait_for_pending(spool, wait_s)
    ready: list[Spooled] = []
    # Written entries are `<pid>-<k>` folders; `.`-names are still being
    # written, or taken.
    entries = (p for p in spool.iterdir() if p.is_dir() and p.name[0] != ".")
    for folder in sorted(entries):
        claimed = folder.with_name(f".{folder.name}.taken-{os.getpid()}")
        try:
            folder.rename(claimed)  # two tasks never ship the same content
        except OSError:
            continue
        content = json.loads((claimed / "content.json").read_text())
        ready.append(Spooled(claimed, content))
    return ready


def _wait_for_pending(spool: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    markers = (m for m in spool.glob("*.pending") if m.name[0] != ".")
    for marker in sorted(markers):
        if not _wait_unlocked(marker, deadline):
            logger.warning(
                "MLflow's post-fit content of task process %s still not logged "
                "after %.0fs: left out",
                marker.stem,
                wait_s,
            )


def _wait_unlocked(marker: Path, deadline: float) -> bool:
    """Whether the process owing `marker`'s content is done by `deadline`."""
    try:
        fd = os.open(marker, os.O_RDONLY)
    except FileNotFoundError:
        return True  # done already
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    finally:
        os.close(fd)
        # Nobody holds it: it is done or died; a dead one's marker goes too.
        with contextlib.suppress(BlockingIOError, FileNotFoundError, OSError):
            _remove_if_unlocked(marker)


def _remove_if_unlocked(marker: Path) -> None:
    fd = os.open(marker, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        marker.unlink()
    finally:
        os.close(fd)


def release(spooled: list[Spooled]) -> None:
    for entry in spooled:
        shutil.rmtree(entry.folder, ignore_errors=True)

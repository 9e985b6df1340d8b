"""What the user's own MLflow calls log in a task, kept for the job's run.

MLflow-exported repos call `mlflow.<flavor>.autolog()` in their training code,
and some log metrics by hand. A learner has no tracking server of its own (the
tenant's code gets no credentials), so each call into the user's code that may
log runs inside a `Capture`: MLflow points at a file store local to the task,
and what landed there travels with the task's reply; the aggregator logs it
into the learner's run (`flops.app.autolog_records`). MLflow's requirement
inference, which loads each logged model again in a fresh interpreter (seconds
per model), is answered with the versions installed in this environment, which
is what FLOps records for its own model too.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from flops.worker.deferred import Spooled

# A task's artifacts travel in its Flower reply; past this they are left out,
# and the reply says so.
ARTIFACT_LIMIT_BYTES = 64 * 1024 * 1024


def _answer_inference(requirements: list[str]) -> None:
    """Replace `mlflow.models.infer_pip_requirements` (what every flavor's
    save_model calls unless given pip_requirements) by the installed versions
    of the repo's requirements and of the flavor's defaults (its fallback)."""
    from flops import model_export

    mlflow_models = sys.modules.get("mlflow.models")
    if mlflow_models is None or getattr(mlflow_models, "_flops_answered", False):
        return

    def installed(
        model_uri: Any, flavor: Any, fallback: list[str] | None = None, **_: Any
    ) -> list[str]:
        names = [*requirements, *(fallback or [])]
        return model_export.installed_requirements(
            [r for r in names if not r.startswith("mlflow")]
        )

    mlflow_models.infer_pip_requirements = installed  # type: ignore[attr-defined]
    environment = sys.modules.get("mlflow.utils.environment")
    if environment is not None:
        environment.infer_pip_requirements = installed  # type: ignore[attr-defined]
    mlflow_models._flops_answered = True  # type: ignore[attr-defined]


class Capture:
    """A task-local MLflow file store around one call into the user's code."""

    def __init__(self, requirements: list[str]) -> None:
        self.requirements = requirements
        self.scratch = Path(tempfile.mkdtemp(prefix="flops-mlruns-"))
        # Absent until MLflow makes it: the file store creates its default
        # experiment only in a root it creates.
        self.root = self.scratch / "mlruns"
        self.uri = self.root.as_uri()
        # Each captured run's place in the reply (`runs/<index>`), for content
        # logged into it later (flops.worker.deferred).
        self.indexes: dict[str, int] = {}
        self._kept = False

    def __enter__(self) -> Capture:
        os.environ["MLFLOW_TRACKING_URI"] = self.uri
        # MLflow 3 refuses the file store unless asked; it is the one store
        # that needs neither a server nor SQLAlchemy (mlflow-skinny has none).
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        # MLflow tags each run with the user, from the password database unless
        # LOGNAME says; a sandbox's uid has no entry there.
        os.environ.setdefault("LOGNAME", "flops-learner")
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None:
            mlflow.set_tracking_uri(self.uri)
            _answer_inference(self.requirements)
        return self

    def __exit__(self, *_: object) -> None:
        if not self._kept:
            self.discard()

    def keep(self) -> None:
        """Keep the store past the block, for content logged after the reply."""
        self._kept = True

    def discard(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    @contextlib.contextmanager
    def reopened(self) -> Iterator[Any]:
        """The user's MLflow pointed at this store again (a kept one)."""
        with self:
            yield sys.modules["mlflow"]

    def collect(
        self, later: Sequence[Spooled] = ()
    ) -> tuple[dict[str, Any] | None, list[np.ndarray]]:
        """(what the user's MLflow logged, [its artifacts as a tar]) or (None, []).

        `later`: what earlier tasks' postponed MLflow calls logged, shipped in
        this reply (`later` in the payload, `later/<i>/` in the tar)."""
        mlflow = sys.modules.get("mlflow")
        runs: list[dict[str, Any]] = []
        folders: dict[str, Path] = {}
        if mlflow is not None and self.root.is_dir():
            with contextlib.suppress(Exception):
                mlflow.end_run()  # a run the user's code left open
            client = mlflow.MlflowClient(self.uri)
            for experiment in client.search_experiments():
                for run in client.search_runs([experiment.experiment_id]):
                    self.indexes[run.info.run_id] = len(runs)
                    folders[f"runs/{len(runs)}"] = local_path(run.info.artifact_uri)
                    runs.append(describe_run(client, run))
                # MLflow 3 logs models as LoggedModels, outside the run's artifacts.
                search = getattr(client, "search_logged_models", None)
                for model in search([experiment.experiment_id]) if search else []:
                    folders[f"models/{model.name}-{model.model_id}"] = local_path(
                        model.artifact_location
                    )
        elif not later:
            return None, []
        payload: dict[str, Any] = {"runs": runs, "note": None}
        if later:
            payload["later"] = [entry.content for entry in later]
            for i, entry in enumerate(later):
                folders[f"later/{i}"] = entry.files
        blob = _tar(folders)
        if len(blob) > ARTIFACT_LIMIT_BYTES:
            payload["note"] = (
                f"artifacts of {len(blob) / 2**20:.0f} MiB left out "
                f"(more than {ARTIFACT_LIMIT_BYTES / 2**20:.0f} MiB per task)"
            )
            return payload, []
        return payload, [np.frombuffer(blob, dtype=np.uint8)] if blob else []


def local_path(uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def describe_run(client: Any, run: Any) -> dict[str, Any]:
    metrics = [
        [key, m.value, m.step, m.timestamp]
        for key in run.data.metrics
        for m in client.get_metric_history(run.info.run_id, key)
    ]
    return {
        "name": run.info.run_name,
        "run_id": run.info.run_id,
        "parent": run.data.tags.get("mlflow.parentRunId"),
        "params": dict(run.data.params),
        "tags": {
            k: v
            for k, v in run.data.tags.items()
            if not k.startswith("mlflow.") or k == "mlflow.autologging"
        },
        "metrics": metrics,
    }


def _tar(folders: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, folder in folders.items():
            if folder.is_dir() and any(folder.iterdir()):
                tar.add(folder, arcname=name)
                count += 1
    return buffer.getvalue() if count else b""

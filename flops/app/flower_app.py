"""A Flower app's own ServerApp and ClientApp, with FLOps around them.

The generated app's components (see management/pipeline/augment.py) are these
two wrappers, each holding the `module:attribute` of the app's own component;
they run in the app's environment, whose Flower is FLOps' version. Nothing of
the app is changed:

- the ClientApp answers each message itself; FLOps adds the learner's name to
  the reply and what the app's own MLflow calls logged (flops.worker.capture);
- the ServerApp runs the app's main with a Grid that FLOps observes
  (flops.app.round_observer) inside the job's MLflow run; then the final arrays
  are logged as an artifact, and saved as an MLflow model through the app's
  `[tool.flops] model-export` hook when it has one.

The final arrays are those the app stores in `context.state[FINAL_ARRAYS]`, else
those of the last message it sent (with federated evaluation, the final model).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from flops import events, usercode
from flops.app import run_settings as keys
from flops.app.client import LearnerError, reply_records
from flops.app.grid import connection_reporter
from flops.app.round_observer import ObservedGrid, RoundObserver
from flops.app.run_settings import RunSettings
from flops.app.run_tracker import RunTracker
from flops.errors import FlopsError
from flops.worker.capture import Capture

FINAL_ARRAYS = "flops-final-arrays"
ARRAYS_ARTIFACT = "final_arrays"


def load_component(ref: str, kind: type) -> Any:
    """The app's component `module:attribute`, imported from the repo."""
    usercode.ensure_on_path(usercode.repo_dir())
    module, _, attribute = ref.partition(":")
    try:
        value = getattr(importlib.import_module(module), attribute)
    except Exception as exc:
        raise FlopsError(usercode.describe(exc, f"importing {ref}")) from exc
    if not isinstance(value, kind):
        raise FlopsError(f"{ref} is a {type(value).__name__}, not a {kind.__name__}")
    return value


class ObservedClientApp(ClientApp):
    """The app's ClientApp, answering as it is; the reply names the learner."""

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref

    def __call__(self, message: Message, context: Context) -> Message:
        learner = str(context.node_config.get(keys.NODE_LEARNER, context.node_id))
        settings = RunSettings.from_run_config(dict(context.run_config))
        try:
            inner = load_component(self.ref, ClientApp)
            with Capture(list(settings.requirements)) as capture:
                reply = inner(message, context)
                logged, artifacts = capture.collect()
        except FlopsError as err:
            raise LearnerError(learner, str(err)) from err
        except Exception as err:
            raise LearnerError(learner, usercode.describe(err, self.ref)) from err
        if not reply.has_error():
            result = {
                "logged": logged,
                "artifacts": artifacts[0].tobytes() if artifacts else None,
            }
            for name, record in reply_records(context, result).items():
                reply.content[name] = record
        return reply  # type: ignore[no-any-return]


def _save_arrays(arrays: ArrayRecord, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    named = {name: array.numpy() for name, array in arrays.items()}
    np.savez(folder / "arrays.npz", **named)  # type: ignore[arg-type]
    (folder / "arrays.json").write_text(
        json.dumps(
            {
                n: {"shape": list(a.shape), "dtype": str(a.dtype)}
                for n, a in named.items()
            },
            indent=1,
        )
    )


class ObservedServerApp(ServerApp):
    """The app's ServerApp in the job's MLflow run, its rounds observed."""

    def __init__(self, ref: str, model_export: str | None = None) -> None:
        super().__init__()
        self.ref = ref
        self.model_export = model_export

    def __call__(self, grid: Grid, context: Context) -> None:
        settings = RunSettings.from_run_config(dict(context.run_config))
        config = settings.config
        events.emit(
            events.RUN_STARTED,
            rounds=config.rounds,
            learners=config.learners,
            strategy=f"the app's own ({self.ref})",
        )
        try:
            import mlflow

            mlflow.set_tracking_uri(settings.tracking_uri)
            client = mlflow.MlflowClient(settings.tracking_uri)
            # System metrics need psutil, which the app's environment may lack.
            system = importlib.util.find_spec("psutil") is not None
            with mlflow.start_run(run_id=settings.run_id, log_system_metrics=system):
                self._run(grid, context, settings, client)
        except FlopsError as exc:
            events.emit(events.RUN_FAILED, message=str(exc))
            raise
        except Exception as exc:
            events.emit(events.RUN_FAILED, message=usercode.describe(exc, self.ref))
            raise
        events.emit(events.RUN_FINISHED)

    def _run(
        self, grid: Grid, context: Context, settings: RunSettings, client: Any
    ) -> None:
        config = settings.config
        tracker = RunTracker(client, settings.experiment_id, settings.run_id)
        observer = RoundObserver(tracker, config.rounds)
        on_new_node = connection_reporter(config.learners)

        inner = load_component(self.ref, ServerApp)
        try:
            inner(
                ObservedGrid(grid, observer, settings.poll_interval, on_new_node),
                context,
            )
        finally:
            observer.finish()
            tracker.finish_children("FINISHED")
        stored = context.state.array_records.get(FINAL_ARRAYS)
        arrays = stored if stored is not None else observer.last_arrays
        if arrays is None:
            events.emit(events.WARNING, message="The app sent no arrays: none logged.")
            return
        with tempfile.TemporaryDirectory(prefix="flops-arrays-") as tmp:
            _save_arrays(arrays, Path(tmp))
            client.log_artifacts(settings.run_id, tmp, ARRAYS_ARTIFACT)
        if self.model_export is None:
            events.emit(
                events.WARNING,
                message="The final arrays are logged (artifact "
                f"'{ARRAYS_ARTIFACT}'), not a model: a Flower app has no MLflow "
                "flavor unless it names a [tool.flops] model-export hook, so the "
                "model is not registered and gets no inference image.",
            )
            return
        self._export(arrays, settings, client)

    def _export(self, arrays: ArrayRecord, settings: RunSettings, client: Any) -> None:
        from flops.app.server import log_model_folder

        hook = load_component(self.model_export or "", object)
        with tempfile.TemporaryDirectory(prefix="flops-model-") as tmp:
            path = Path(tmp) / "model"
            try:
                hook(arrays, str(path))
            except Exception as exc:
                raise FlopsError(
                    usercode.describe(exc, self.model_export or "")
                ) from exc
            flavors = _flavors(path)
            flavor = next((f for f in flavors if f != "python_function"), "pyfunc")
            model_uri = log_model_folder(client, settings, path, flavor)
        events.emit(
            events.MODEL_LOGGED,
            model_uri=model_uri,
            model_id=model_uri.removeprefix("models:/"),
            flavor=flavor,
            signature=False,
        )


def _flavors(path: Path) -> list[str]:
    """The flavors of the MLflow model folder the hook saved (FlopsError if none)."""
    import yaml

    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise FlopsError(
            f"The model-export hook saved no MLflow model at the path it was given "
            f"(no MLmodel file in {path}); call mlflow.<flavor>.save_model(..., path)."
        )
    return list((yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}))


def observed_server_app(ref: str, model_export: str | None = None) -> ServerApp:
    return ObservedServerApp(ref, model_export)


def observed_client_app(ref: str) -> ClientApp:
    return ObservedClientApp(ref)

"""The FLOps ServerApp: the configured Flower strategy, tracked, then the model logged.

The aggregator asks the model worker (the user's code, in the environment the
repo asks for) for a ModelManager without data, as the contract says, to read the
initial parameters; runs Flower's own strategy loop with round tracking; and at
the end has the worker load the final parameters and save the model with its
flavor and the signature a learner derived, which this side logs to MLflow.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from flops import events, usercode
from flops.app import cluster
from flops.app import run_settings as keys
from flops.app.grid import FastPollGrid, connection_reporter
from flops.app.run_settings import RunSettings
from flops.app.run_tracker import RunTracker
from flops.app.tracking import tracked_strategy
from flops.errors import FlopsError
from flops.worker.client import WorkerSession

logger = logging.getLogger(__name__)


def log_model_folder(
    client: Any, settings: RunSettings, folder: Path, flavor: str
) -> str:
    """Log an MLflow model folder (saved by the worker) as this run's model;
    returns its `models:/<id>` URI.

    The worker saved it with the user's own MLflow and framework; this side only
    uploads the folder, as MLflow's `log_model` does after its own `save_model`.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    model = client.create_logged_model(
        settings.experiment_id,
        name="model",
        source_run_id=settings.run_id,
        model_type=flavor,
    )
    client.log_model_artifacts(model.model_id, str(folder))
    client.log_outputs(settings.run_id, [LoggedModelOutput(model.model_id, step=0)])
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return f"models:/{model.model_id}"


def _train_and_export(grid: Grid, settings: RunSettings, client: Any) -> None:
    import mlflow

    config = settings.config
    with WorkerSession() as worker:
        worker.new()
        initial = ArrayRecord(worker.get_parameters())
    # Hierarchical: each cluster's aggregator logs its own figures, and its
    # learners', into its run; the root logs the root's rounds alone.
    tracker = RunTracker(
        client,
        settings.experiment_id,
        settings.run_id,
        log_children=settings.tier != keys.ROOT_TIER,
    )
    strategy = tracked_strategy(config, tracker, settings.connect_timeout)
    on_new_node = connection_reporter(config.root_nodes)

    result = strategy.start(  # type: ignore[attr-defined]
        grid=FastPollGrid(grid, settings.poll_interval, on_new_node),
        initial_arrays=initial,
        num_rounds=config.rounds,
        timeout=config.round_timeout,
    )
    if strategy.signature is None:
        events.emit(
            events.WARNING,
            message="The model is logged without a signature: no learner found an "
            "input sample; define ModelManager.get_input_example() to provide one.",
        )
    with (
        tempfile.TemporaryDirectory(prefix="flops-model-") as tmp,
        WorkerSession(timeout=60) as worker,
    ):
        worker.new()
        worker.set_parameters(result.arrays.to_numpy_ndarrays())
        saved = worker.save_model(
            Path(tmp) / "model",
            config.model_flavor,
            strategy.signature,
            list(settings.requirements),
        )
        for note in saved.get("notes", []):
            events.emit(events.WARNING, message=str(note))
        flavor = str(saved["flavor"])
        model_uri = log_model_folder(client, settings, Path(tmp) / "model", flavor)
    mlflow.set_tag("flops.flavor", flavor)
    tracker.finish_children("FINISHED")
    events.emit(
        events.MODEL_LOGGED,
        model_uri=model_uri,
        model_id=model_uri.removeprefix("models:/"),
        flavor=flavor,
        signature=strategy.signature is not None,
    )


def _cluster_main(grid: Grid, settings: RunSettings) -> None:
    try:
        cluster.main(grid, settings)
    except Exception as exc:
        message = (
            str(exc)
            if isinstance(exc, FlopsError)
            else usercode.describe(exc, "the cluster's aggregator")
        )
        events.emit(events.RUN_FAILED, cluster=settings.cluster, message=message)
        raise
    events.emit(events.RUN_FINISHED, cluster=settings.cluster)


def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(dict(context.run_config))
    if settings.tier == keys.CLUSTER_TIER:
        _cluster_main(grid, settings)
        return
    config = settings.config
    events.emit(
        events.RUN_STARTED,
        rounds=config.rounds,
        learners=config.learners,
        strategy=config.strategy,
    )
    try:
        import mlflow

        mlflow.set_tracking_uri(settings.tracking_uri)
        client = mlflow.MlflowClient(settings.tracking_uri)
        with mlflow.start_run(run_id=settings.run_id, log_system_metrics=True):
            _train_and_export(grid, settings, client)
    except FlopsError as exc:
        events.emit(events.RUN_FAILED, message=str(exc))
        raise
    except Exception as exc:
        events.emit(events.RUN_FAILED, message=usercode.describe(exc, "the aggregator"))
        raise
    events.emit(events.RUN_FINISHED)


def create_server_app() -> ServerApp:
    app = ServerApp()
    app.main()(main)
    return app

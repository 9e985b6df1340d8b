"""The FLOps ServerApp: the configured Flower strategy, tracked, then the model logged.

The aggregator builds a ModelManager without data (as the contract says) to read
the initial parameters, runs Flower's own strategy loop with round tracking, and
at the end loads the final parameters into that ModelManager and logs the model
to MLflow with its flavor and the signature a learner derived.
"""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from flops import events, model_export, usercode
from flops.app.grid import FastPollGrid
from flops.app.run_settings import RunSettings
from flops.app.tracking import RunTracker, TrackedStrategy
from flops.errors import FlopsError
from flops.strategies import build_strategy

logger = logging.getLogger(__name__)


def _train_and_export(grid: Grid, settings: RunSettings, client: object) -> None:
    import mlflow

    config = settings.config
    manager = usercode.new_model_manager()
    initial = ArrayRecord(usercode.get_parameters(manager))
    tracker = RunTracker(client, settings.experiment_id, settings.run_id)
    strategy = build_strategy(config, TrackedStrategy)
    assert isinstance(strategy, TrackedStrategy)
    strategy.track(
        tracker,
        config.rounds,
        config.effective_min_fit,
        config.effective_min_evaluate,
        learners=config.learners,
        wait_timeout=config.round_timeout,
        connect_timeout=settings.connect_timeout,
    )
    connected: set[int] = set()

    def on_new_node(node_id: int) -> None:
        connected.add(node_id)
        events.emit(
            events.LEARNER_CONNECTED,
            node_id=node_id,
            connected=len(connected),
            needed=config.learners,
        )

    result = strategy.start(  # type: ignore[attr-defined]
        grid=FastPollGrid(grid, settings.poll_interval, on_new_node),
        initial_arrays=initial,
        num_rounds=config.rounds,
        timeout=config.round_timeout,
    )
    usercode.call(
        manager.set_model_parameters,
        "set_model_parameters()",
        result.arrays.to_numpy_ndarrays(),
    )
    model = usercode.call(manager.get_model, "get_model()")
    flavor = config.model_flavor or model_export.detect_flavor(model)
    if strategy.signature is None:
        events.emit(
            events.WARNING,
            message="The model is logged without a signature: no learner found an "
            "input sample; define ModelManager.get_input_example() to provide one.",
        )
    info = model_export.log_model(
        flavor,
        model,
        strategy.signature,
        repo=usercode.repo_dir(),
        pip_requirements=list(settings.requirements),
    )
    mlflow.set_tag("flops.flavor", flavor)
    tracker.finish_children("FINISHED")
    events.emit(
        events.MODEL_LOGGED,
        model_uri=info.model_uri,
        model_id=getattr(info, "model_id", None),
        flavor=flavor,
        signature=strategy.signature is not None,
    )


def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(dict(context.run_config))
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

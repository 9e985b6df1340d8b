"""The FLOps ClientApp: Flower's message API around the user's ModelManager.

The user's code runs in the model worker (flops/worker), from the environment the
repo asks for; this app, in FLOps' runtime environment, moves arrays and metrics
between Flower and it. Each message gets a fresh ModelManager with this learner's
data in a forked worker process, as in Flower's own process-per-message model,
with imports kept warm, so that costs milliseconds, not seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from flops import events, usercode
from flops.app import run_settings as keys
from flops.app import uplink
from flops.app.run_settings import RunSettings
from flops.errors import FlopsError
from flops.worker.client import WorkerSession

logger = logging.getLogger(__name__)


def _learner_name(context: Context) -> str:
    return str(context.node_config.get(keys.NODE_LEARNER, f"node-{context.node_id}"))


def _prepare(msg: Message, context: Context, worker: WorkerSession) -> RunSettings:
    """The worker's ModelManager holding this learner's data and the message's
    parameters."""
    config = msg.content.config_records.get("config")
    events.emit(
        events.LEARNER_TASK,
        learner=_learner_name(context),
        phase=msg.metadata.message_type,
        round=config.get("server-round") if config is not None else None,
    )
    settings = RunSettings.from_run_config(dict(context.run_config))
    data_dir = context.node_config.get(keys.NODE_DATA_DIR)
    worker.new(
        Path(str(data_dir)) if data_dir else None,
        tuple(settings.config.data_tags),
        settings.requirements,
    )
    worker.set_parameters(msg.content.array_records["arrays"].to_numpy_ndarrays())
    return settings


def _meta(context: Context, **extra: str) -> ConfigRecord:
    return ConfigRecord({"learner": _learner_name(context), **extra})


def reply_records(
    context: Context, result: dict[str, Any], **extra: str
) -> dict[str, ConfigRecord]:
    """The reply's config records: who answered, and what the user's own MLflow
    calls logged in the task (for the aggregator to log into this learner's run)."""
    records = {keys.META_RECORD: _meta(context, **extra)}
    if result.get("logged"):
        logged = ConfigRecord({"logged": json.dumps(result["logged"])})
        if result.get("artifacts"):
            logged["artifacts"] = bytes(result["artifacts"])
        records[keys.LOGGED_RECORD] = logged
    return records


class LearnerError(FlopsError):
    """A learner's failure, named: Flower's error replies carry no content, so the
    learner's name travels in the message (`learner-0: fit_model() raised ...`)."""

    def __init__(self, learner: str, message: str) -> None:
        self.learner = learner
        super().__init__(f"{learner}: {message}")


def _named_failures(
    handler: Callable[[Message, Context], Message],
) -> Callable[[Message, Context], Message]:
    def wrapper(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except FlopsError as err:
            raise LearnerError(_learner_name(context), str(err)) from err
        except Exception as err:
            message = usercode.describe(err, f"the learner's {handler.__name__}")
            raise LearnerError(_learner_name(context), message) from err

    wrapper.__name__ = handler.__name__
    return wrapper


def train(msg: Message, context: Context) -> Message:
    if (relay := uplink.relay_of(context)) is not None:
        return uplink.forward(msg, context, relay)
    started = time.perf_counter()
    with WorkerSession() as worker:
        _prepare(msg, context, worker)
        fit = worker.fit()
        params = worker.get_parameters()
    metrics = MetricRecord(
        {
            "num-examples": int(fit["examples"]),
            "fit_seconds": float(fit["fit_seconds"]),
            "mlflow_seconds": float(fit["mlflow_seconds"]),
            "learner_seconds": time.perf_counter() - started,
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(params),
            "metrics": metrics,
            **reply_records(context, fit),
        }
    )
    return Message(content=content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    if (relay := uplink.relay_of(context)) is not None:
        return uplink.forward(msg, context, relay)
    started = time.perf_counter()
    extra: dict[str, str] = {}
    with WorkerSession() as worker:
        settings = _prepare(msg, context, worker)
        config = msg.content.config_records["config"]
        result = worker.evaluate(final=bool(config.get(keys.FINAL_ROUND)))
        if config.get(keys.WANT_SIGNATURE):
            derived = worker.signature(settings.config.model_flavor)
            if derived.get("warning"):
                logger.warning("%s", derived["warning"])
            signature = derived.get("signature") or {}
            extra = {
                f"signature-{part}": str(value)
                for part, value in signature.items()
                if value
            }
    metrics = MetricRecord(
        {
            "num-examples": int(result["examples"]),
            "loss": float(result["loss"]),
            "accuracy": float(result["accuracy"]),
            "learner_seconds": time.perf_counter() - started,
        }
    )
    content = RecordDict(
        {"metrics": metrics, **reply_records(context, result, **extra)}
    )
    return Message(content=content, reply_to=msg)


def create_client_app() -> ClientApp:
    app = ClientApp()
    app.train()(_named_failures(train))
    app.evaluate()(_named_failures(evaluate))
    return app

"""The FLOps ClientApp: Flower's message API around the user's ModelManager.

Each message gets a fresh ModelManager with this learner's data, as in Flower's
own process-per-message model; `flops.executor` keeps the imports warm so that
costs milliseconds, not seconds.
"""

from __future__ import annotations

import logging
import numbers
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

from flops import data, model_export, usercode
from flops.app import run_settings as keys
from flops.app.run_settings import RunSettings
from flops.errors import FlopsError
from flops.usercode import UserCodeError

logger = logging.getLogger(__name__)


def _learner_name(context: Context) -> str:
    return str(context.node_config.get(keys.NODE_LEARNER, f"node-{context.node_id}"))


def _prepare(msg: Message, context: Context) -> tuple[Any, RunSettings]:
    """A ModelManager holding this learner's data and the message's parameters."""
    settings = RunSettings.from_run_config(dict(context.run_config))
    data_dir = context.node_config.get(keys.NODE_DATA_DIR)
    data.set_current(
        data.LearnerData(Path(str(data_dir)), tuple(settings.config.data_tags))
        if data_dir
        else None
    )
    manager = usercode.new_model_manager()
    usercode.call(manager.set_model_data, "set_model_data()")
    arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
    usercode.call(manager.set_model_parameters, "set_model_parameters()", arrays)
    return manager, settings


def _count(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserCodeError(
            f"{label} must return the number of examples as a positive int, "
            f"got {value!r}"
        )
    return int(value)


def _number(value: Any, label: str) -> float:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserCodeError(f"{label} must be a number, got {value!r}")
    return float(value)


def _meta(context: Context, **extra: str) -> ConfigRecord:
    return ConfigRecord({"learner": _learner_name(context), **extra})


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
    started = time.perf_counter()
    manager, _ = _prepare(msg, context)
    fit_started = time.perf_counter()
    examples = _count(usercode.call(manager.fit_model, "fit_model()"), "fit_model()")
    fit_seconds = time.perf_counter() - fit_started
    params = usercode.get_parameters(manager)
    metrics = MetricRecord(
        {
            "num-examples": examples,
            "fit_seconds": fit_seconds,
            "learner_seconds": time.perf_counter() - started,
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(params),
            "metrics": metrics,
            keys.META_RECORD: _meta(context),
        }
    )
    return Message(content=content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    started = time.perf_counter()
    manager, settings = _prepare(msg, context)
    result = usercode.call(manager.evaluate_model, "evaluate_model()")
    if not isinstance(result, list | tuple) or len(result) != 3:
        raise UserCodeError(
            "evaluate_model() must return (loss, accuracy, number of examples), "
            f"got {result!r}"
        )
    loss, accuracy, examples = result
    metrics = MetricRecord(
        {
            "num-examples": _count(examples, "evaluate_model()[2]"),
            "loss": _number(loss, "evaluate_model()[0] (loss)"),
            "accuracy": _number(accuracy, "evaluate_model()[1] (accuracy)"),
            "learner_seconds": time.perf_counter() - started,
        }
    )
    extra: dict[str, str] = {}
    if msg.content.config_records["config"].get(keys.WANT_SIGNATURE):
        flavor = settings.config.model_flavor or model_export.detect_flavor(
            manager.get_model()
        )
        try:
            signature = model_export.signature_for(manager, flavor)
        except Exception as exc:  # a signature is optional; say why it is missing
            logger.warning(
                "No model signature: %s", usercode.describe(exc, "predict()")
            )
            signature = None
        if signature:
            extra = {
                f"signature-{part}": value for part, value in signature.items() if value
            }
    content = RecordDict(
        {"metrics": metrics, keys.META_RECORD: _meta(context, **extra)}
    )
    return Message(content=content, reply_to=msg)


def create_client_app() -> ClientApp:
    app = ClientApp()
    app.train()(_named_failures(train))
    app.evaluate()(_named_failures(evaluate))
    return app

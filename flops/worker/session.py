"""One task's conversation with the user's code: what each request does.

A session holds one ModelManager. The Flower side asks for it (`new`, with this
learner's data or none, as the aggregator), moves parameters in and out, and
asks it to fit, evaluate, describe itself (the smoke test), derive a signature
or save the model with its MLflow flavor. Every call into the user's code goes
through `usercode.call`, so a failure names the method and the repo's line.
"""

from __future__ import annotations

import contextlib
import numbers
import time
from pathlib import Path
from typing import Any

import numpy as np

from flops import data, model_export, usercode
from flops.usercode import UserCodeError
from flops.worker import deferred
from flops.worker.capture import Capture

Reply = tuple[dict[str, Any], list[np.ndarray]]


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


class Session:
    def __init__(self, repo: Path, spool: Path) -> None:
        self.repo = repo
        # Where earlier tasks' postponed MLflow content waits to be shipped.
        self.spool = spool
        self.manager: Any = None
        self.requirements: list[str] = []

    def _manager(self) -> Any:
        if self.manager is None:
            raise UserCodeError("the task asked for the model before creating it")
        return self.manager

    def handle(self, op: str, args: dict[str, Any], arrays: list[np.ndarray]) -> Reply:
        method = getattr(self, f"op_{op}", None)
        if method is None:
            raise UserCodeError(f"the model worker has no operation '{op}'")
        result: Reply = method(args, arrays)
        return result

    def op_new(self, args: dict[str, Any], _: list[np.ndarray]) -> Reply:
        """A fresh ModelManager; with `data_dir`, holding this learner's data.
        `requirements` (the repo's) are what a model the user's code logs records."""
        data_dir = args.get("data_dir")
        self.requirements = [str(r) for r in args.get("requirements", ())]
        data.set_current(
            data.LearnerData(Path(data_dir), tuple(args.get("tags", ())))
            if data_dir
            else None
        )
        self.manager = usercode.new_model_manager(self.repo)
        if data_dir:
            usercode.call(self.manager.set_model_data, "set_model_data()")
        return {}, []

    def op_set_parameters(self, _: dict[str, Any], arrays: list[np.ndarray]) -> Reply:
        usercode.call(
            self._manager().set_model_parameters, "set_model_parameters()", arrays
        )
        return {}, []

    def op_get_parameters(self, _: dict[str, Any], __: list[np.ndarray]) -> Reply:
        return {}, usercode.get_parameters(self._manager())

    def _collect(
        self, capture: Capture, final: bool
    ) -> tuple[dict[str, Any] | None, list[np.ndarray]]:
        """What this task logged, with what earlier tasks of this learner logged
        after their replies (all of it, in the final round's last reply)."""
        later = deferred.take(self.spool, deferred.FINAL_WAIT_S if final else 0.0)
        try:
            return capture.collect(later)
        finally:
            deferred.release(later)

    def op_fit(self, _: dict[str, Any], __: list[np.ndarray]) -> Reply:
        with Capture(self.requirements) as capture:
            with deferred.postponing(capture, self.spool):
                started = time.perf_counter()
                examples = usercode.call(self._manager().fit_model, "fit_model()")
                fit_seconds = time.perf_counter() - started
            logged, artifacts = self._collect(capture, final=False)
        return {
            "examples": _count(examples, "fit_model()"),
            "fit_seconds": fit_seconds,
            "mlflow_seconds": time.perf_counter() - started - fit_seconds,
            "logged": logged,
        }, artifacts

    def op_evaluate(self, args: dict[str, Any], __: list[np.ndarray]) -> Reply:
        """`final`: the job's last task for this learner; nothing is postponed,
        and it ships what earlier tasks are still computing."""
        final = bool(args.get("final"))
        with Capture(self.requirements) as capture:
            with (
                contextlib.nullcontext()
                if final
                else deferred.postponing(capture, self.spool)
            ):
                result = usercode.call(
                    self._manager().evaluate_model, "evaluate_model()"
                )
            logged, artifacts = self._collect(capture, final)
        if not isinstance(result, list | tuple) or len(result) != 3:
            raise UserCodeError(
                "evaluate_model() must return (loss, accuracy, number of examples), "
                f"got {result!r}"
            )
        loss, accuracy, examples = result
        return {
            "examples": _count(examples, "evaluate_model()[2]"),
            "loss": _number(loss, "evaluate_model()[0] (loss)"),
            "accuracy": _number(accuracy, "evaluate_model()[1] (accuracy)"),
            "logged": logged,
        }, artifacts

    def _flavor(self, args: dict[str, Any]) -> str:
        model = usercode.call(self._manager().get_model, "get_model()")
        return str(args.get("flavor") or model_export.detect_flavor(model))

    def op_describe(self, args: dict[str, Any], __: list[np.ndarray]) -> Reply:
        """What the smoke test reports: flavor, arrays, their size."""
        params = usercode.get_parameters(self._manager())
        if not params:
            raise UserCodeError("get_model_parameters() returned no arrays")
        return {
            "flavor": self._flavor(args),
            "arrays": len(params),
            "parameter_bytes": int(sum(p.nbytes for p in params)),
        }, []

    def op_signature(self, args: dict[str, Any], __: list[np.ndarray]) -> Reply:
        """The model signature from a few of this learner's inputs (no values)."""
        flavor = self._flavor(args)
        try:
            signature = model_export.signature_for(self._manager(), flavor)
        except Exception as exc:  # a signature is optional; say why it is missing
            return {
                "signature": None,
                "warning": "No model signature: "
                + usercode.describe(exc, "predict()", self.repo),
            }, []
        return {"signature": signature, "warning": None}, []

    def op_save_model(self, args: dict[str, Any], __: list[np.ndarray]) -> Reply:
        """Save the model with its flavor into `path` (an MLflow model folder)."""
        flavor = self._flavor(args)
        model = usercode.call(self._manager().get_model, "get_model()")
        notes = model_export.save_model(
            flavor,
            model,
            args.get("signature"),
            path=Path(str(args["path"])),
            repo=self.repo,
            requirements=list(args.get("requirements", ())),
        )
        return {"flavor": flavor, "notes": notes}, []

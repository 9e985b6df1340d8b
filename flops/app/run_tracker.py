"""Where a run's figures go: MLflow (the job's run, a child run per learner) and
job events. The strategy (`flops.app.tracking.TrackedStrategy`) decides what to
report; this decides where it lands.
"""

from __future__ import annotations

import time
from typing import Any

from flwr.app import ConfigRecord

from flops import events
from flops.app import autolog_records


class RunTracker:
    """Where round figures go: MLflow (parent and per-learner runs) and events."""

    def __init__(
        self,
        client: Any | None,
        experiment_id: str,
        run_id: str,
        log_children: bool = True,
    ) -> None:
        """`log_children`: False where the per-node figures are logged elsewhere
        (a hierarchical root: each cluster logs its own)."""
        self._client = client
        self._log_children = log_children
        self._experiment_id = experiment_id
        self._run_id = run_id
        self._children: dict[str, str] = {}
        self._logs: dict[str, autolog_records.LearnerLog] = {}

    def _child(self, learner: str) -> str:
        if learner not in self._children:
            assert self._client is not None
            run = self._client.create_run(
                self._experiment_id,
                run_name=learner,
                tags={"mlflow.parentRunId": self._run_id, "flops.learner": learner},
            )
            self._children[learner] = run.info.run_id
        return self._children[learner]

    def _log(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        if self._client is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._client.log_batch(run_id, metrics=batch)

    def log_round(
        self,
        server_round: int,
        metrics: dict[str, float],
        per_learner: dict[str, dict[str, float]],
    ) -> None:
        self._log(self._run_id, metrics, server_round)
        if not self._log_children:
            return
        for learner, values in per_learner.items():
            self._log(self._child(learner), values, server_round)

    def log_captured(
        self, learner: str, server_round: int, phase: str, record: ConfigRecord
    ) -> None:
        """What the learner's own MLflow calls logged in this task (autolog), into
        its run; a failure to do so is a warning, never the round's end."""
        if self._client is None:
            return
        try:
            note = autolog_records.log_task(
                self._client,
                self._child(learner),
                server_round,
                phase,
                record,
                self._logs.setdefault(learner, autolog_records.LearnerLog()),
            )
        except Exception as exc:  # what a learner sent is untrusted input
            note = f"not logged ({type(exc).__name__}: {exc})"
        if note:
            events.emit(
                events.WARNING,
                message=f"{learner}, round {server_round} {phase}: what its own "
                f"MLflow calls logged: {note}",
            )

    def finish_children(self, status: str) -> None:
        if self._client is None:
            return
        for run_id in self._children.values():
            self._client.set_terminated(run_id, status=status)

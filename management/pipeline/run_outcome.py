"""A run's end, read from its authorities rather than its actors' logs.

On a backend whose logs lose lines (`Deployment.lossy_logs`: Oakestra keeps
only an instance's last 1,024 bytes), the aggregator's `run_finished` and
`model_logged` events can be missed. The follower then also asks Flower's
Control API how the root run is doing, every few seconds, and once Flower
says it finished, asks MLflow for the model the run logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flops.errors import FlopsError
from flops_management.orchestrators import Deployment
from flops_management.orchestrators.superlink_control import SuperLinkControl
from flops_management.pipeline import tracking

log = logging.getLogger(__name__)

INTERVAL_S = 3.0


@dataclass
class Outcome:
    finished: bool = False
    model_uri: str | None = None
    failure: str | None = None


class RunOutcome:
    def __init__(
        self,
        deployment: Deployment,
        flower_run_id: int,
        tracking_uri: str,
        experiment_id: str,
        mlflow_run_id: str,
        interval: float = INTERVAL_S,
    ) -> None:
        self.deployment = deployment
        self.flower_run_id = flower_run_id
        self.tracking = tracking.Tracking(tracking_uri)
        self.experiment_id = experiment_id
        self.mlflow_run_id = mlflow_run_id
        self.interval = interval
        self._next = time.monotonic() + interval

    def poll(self) -> Outcome:
        """What is known now (asks at most once per `interval`)."""
        if time.monotonic() < self._next:
            return Outcome()
        self._next = time.monotonic() + self.interval
        try:
            with SuperLinkControl(
                self.deployment.control_address, self.deployment.root_certificates
            ) as control:
                status = control.run_status(self.flower_run_id)
        except FlopsError as err:  # the aggregator's own exit is followed apart
            log.info("run status unknown for now: %s", err)
            return Outcome()
        if not status.finished:
            return Outcome()
        if not status.completed:
            return Outcome(
                failure=f"Flower says the run {status.sub_status}"
                + (f": {status.details}" if status.details else ".")
            )
        model = self.tracking.logged_model_uri(self.experiment_id, self.mlflow_run_id)
        return Outcome(finished=True, model_uri=model)

"""Following a Flower run through its actors' logs until it ends, one way or another.

The aggregator's `FLOPS_EVENT` lines become the job's events and progress; the run
fails fast, with the reason in words, when the aggregator reports a failure, the
SuperLink or aggregator dies, or learners do not connect in time.

A learner that dies is a dropout: it is reported by name (event `learner_lost`,
the project's `progress.learners_lost`), the rest of it is stopped so that its
SuperNode leaves the federation at once, and the run goes on as long as the
learners left can satisfy min_fit/min_evaluate; below that it fails naming who
is gone.

Hierarchical mode: the clusters' events and losses are `follow_clusters`'.
"""

from __future__ import annotations

import time
from typing import Any

from flops import events
from flops.config import ProjectConfig
from flops.errors import TrainingError
from flops.executor import TASK_EXITED
from flops_management.limits import bounded
from flops_management.models import Progress
from flops_management.orchestrators import Deployment, LogLine
from flops_management.orchestrators.base import AGGREGATOR
from flops_management.orchestrators.node_auth import refusal
from flops_management.orchestrators.topology import (
    ComponentState,
    ComponentStatus,
    Role,
)
from flops_management.pipeline.context import JobContext
from flops_management.pipeline.follow_clusters import ROOT_NODE_EVENTS, ClusterFollower
from flops_management.pipeline.joined import JoinedLearners
from flops_management.pipeline.run_outcome import RunOutcome

POLL_S = 0.2
CONNECT_GRACE_S = 15.0
_SUMMARY_METRICS = ("eval_accuracy", "eval_loss", "round_seconds")


class RunFollower:
    def __init__(
        self,
        ctx: JobContext,
        config: ProjectConfig,
        outcome: RunOutcome | None = None,
    ) -> None:
        assert ctx.deployment is not None
        self.ctx = ctx
        self.config = config
        self.deployment: Deployment = ctx.deployment
        self.progress = Progress(stage="train", rounds=config.rounds)
        self.failure: str | None = None
        self.finished = False
        self.model_uri: str | None = None
        self.actor_lines = 0
        self.needed = max(config.effective_min_fit, config.effective_min_evaluate)
        self.joined = JoinedLearners(ctx)
        self.hierarchical = config.hierarchical
        self.clusters = ClusterFollower(ctx, self.deployment, self.progress)
        # Where logs lose lines: the run's end from Flower, its model from MLflow.
        self.outcome = outcome

    def _deadline(self) -> float:
        # Flower enforces round_timeout per phase; this only catches a hang.
        budget = self.config.rounds * 2 * self.config.round_timeout
        return (
            time.monotonic() + self.ctx.settings.learner_connect_timeout + budget + 300
        )

    def follow(self, model_expected: bool = True) -> str | None:
        """Block until the run ends; return the logged model's URI (None when
        none was expected: a Flower app without an export hook) or raise."""
        connect_deadline = time.monotonic() + self.ctx.settings.learner_connect_timeout
        deadline = self._deadline()
        while True:
            self.ctx.check_cancelled()
            self.joined.sync()
            self._drain()
            if self.outcome is not None and not (self.finished or self.failure):
                known = self.outcome.poll()
                self.finished, self.failure = known.finished, known.failure
                self.model_uri = self.model_uri or known.model_uri
            if self.failure:
                raise TrainingError(self.failure)
            if self.finished:
                if self.model_uri is None and model_expected:
                    raise TrainingError("The run finished without logging a model.")
                return self.model_uri
            exited = [
                name for name in self.deployment.exited() if not self._accounted(name)
            ]
            if exited:
                time.sleep(0.5)  # let the last lines reach the logs
                self._drain()
                if self.failure or self.finished:
                    continue
                self._exited(exited)
                continue
            now = time.monotonic()
            # The aggregator starts without absent learners if enough came; give it
            # a moment past the same deadline to say so.
            if (
                not self.hierarchical  # each tier waits for its own nodes
                and self.outcome is None  # lost lines are no news of learners
                and self.progress.round == 0
                and self.progress.learners_connected < self.needed
                and now > connect_deadline + CONNECT_GRACE_S
            ):
                raise TrainingError(
                    f"Only {self.progress.learners_connected} of "
                    f"{self.config.learners} learners connected within "
                    f"{self.ctx.settings.learner_connect_timeout:.0f}s; "
                    f"{self.needed} needed." + self._gone_text()
                )
            if now > deadline:
                raise TrainingError("The run did not finish in time.")
            time.sleep(POLL_S)

    def _gone_text(self) -> str:
        lost = self.progress.learners_lost
        return (
            "\nGone: " + "; ".join(f"{name} ({why})" for name, why in lost.items())
            if lost
            else ""
        )

    def _accounted(self, component: str) -> bool:
        """A stopped component already reported: a lost learner's, a lost
        cluster's."""
        placed = self.deployment.component(component)
        if placed is None:
            return False
        if placed.learner is not None:
            return placed.learner in self.progress.learners_lost
        return self.clusters.accounted(placed.cluster)

    def _exited(self, components: list[str]) -> None:
        """A component stopped: the job fails, unless it is a learner the run can
        do without (then it is a dropout), or a cluster's (the root decides)."""
        states = self.deployment.status()
        for name in components:
            placed = self.deployment.component(name)
            learner = placed.learner if placed else None
            state = states.get(name, ComponentStatus(ComponentState.REMOVED))
            if learner is None and placed is not None and placed.cluster is not None:
                self.clusters.lose(
                    placed.cluster,
                    f"{name} {state}: " + self.deployment.tail(name, 5)[-500:],
                )
                continue
            if learner is None:
                raise TrainingError(
                    f"{name} stopped unexpectedly ({state}):\n"
                    + self.deployment.tail(name)
                )
            if learner in self.progress.learners_lost:
                continue
            self._lose(learner, f"{name} {state}")

    def _lose(self, learner: str, why: str) -> None:
        self.progress.learners_lost[learner] = why
        self.deployment.stop_learner(learner)  # its SuperNode leaves at once
        self.ctx.log(f"{learner} is gone ({why}) in round {self.progress.round}")
        self.ctx.event(
            "learner_lost", learner=learner, reason=why, round=self.progress.round
        )
        self.ctx.store.update_project(self.ctx.project_id, progress=self.progress)
        if self.hierarchical:
            self.clusters.learner_lost(learner)
            return
        left = self.config.learners - len(self.progress.learners_lost)
        if left < self.needed:
            self.failure = (
                f"{len(self.progress.learners_lost)} of {self.config.learners} "
                f"learners are gone, {left} left, {self.needed} needed "
                "(min_fit/min_evaluate)." + self._gone_text()
            )

    def _drain(self) -> None:
        changed = False
        for line in self.deployment.logs():
            changed |= self._handle(line)
        if changed:
            self.ctx.store.update_project(self.ctx.project_id, progress=self.progress)

    def _actor_log(self, line: LogLine) -> None:
        """The actors' own output as events (errors show there), bounded per job:
        it is written by the tenant's code, which may print without end."""
        limit = self.ctx.settings.max_actor_log_events
        self.actor_lines += 1
        if self.actor_lines < limit:
            text = bounded(line.text, self.ctx.settings.max_event_chars)
            self.ctx.event("actor_log", component=line.component, line=text)
        elif self.actor_lines == limit:
            self.ctx.event(
                "actor_log_truncated",
                limit=limit,
                message=f"Actor output beyond {limit} lines is not stored as events "
                "(FLOPS_MAX_ACTOR_LOG_EVENTS); the job's log folder has all of it.",
            )

    def _refused(self, line: LogLine) -> None:
        """A SuperNode the job's SuperLink refused (an unregistered or revoked
        key): a job event, not only a log line."""
        if self.deployment.learner_of(line.component) is not None:
            return  # learners' own output is not the SuperLink's word
        refused = refusal(line.text)
        if refused is None:
            return
        call, code = refused
        self.ctx.event(
            events.NODE_REFUSED,
            code=code,
            call=call,
            round=self.progress.round,
            message=f"The SuperLink refused a SuperNode whose key is not registered "
            f"for this job (Flower error {code} on {call}).",
        )

    def _handle(self, line: LogLine) -> bool:
        self._refused(line)
        too_long = len(line.text) > 4 * self.ctx.settings.max_event_chars
        event = None if too_long else events.parse_event(line.text)
        if event is None:
            if line.text.strip():
                self._actor_log(line)
            return False
        kind = str(event.pop("type"))
        learner = self.deployment.learner_of(line.component)
        if learner is not None:
            if kind == TASK_EXITED and event.get("code") != 0:
                # The learner's task process died; Flower reports it later.
                self.ctx.event(
                    "learner_task_failed",
                    learner=learner,
                    code=event.get("code"),
                    round=self.progress.round,
                )
            return False
        placed = self.deployment.component(line.component)
        if placed is not None and placed.cluster is not None:
            if placed.role is Role.AGGREGATOR:
                self.clusters.cluster_event(placed.cluster, kind, event)
            return False
        if line.component != AGGREGATOR:
            return False
        event.pop("time", None)
        if self.hierarchical and kind in ROOT_NODE_EVENTS:
            self.clusters.root_event(kind, event)
            return False
        if kind == TASK_EXITED:
            if event.get("code") != 0 and not self.finished and self.failure is None:
                self.failure = (
                    f"The aggregator exited with code {event.get('code')}:\n"
                    + self.deployment.tail(AGGREGATOR)
                )
            return False
        self._apply(kind, event)
        self.ctx.event(kind, **event)
        return True

    def _apply(self, kind: str, event: dict[str, Any]) -> None:
        if kind == events.RUN_FAILED:
            self.failure = str(event.get("message", "the aggregator failed"))
        elif kind == events.RUN_FINISHED:
            self.finished = True
        elif kind == events.MODEL_LOGGED:
            self.model_uri = str(event["model_uri"])
            self.ctx.log(f"model logged: {self.model_uri} ({event.get('flavor')})")
        elif kind == events.LEARNER_CONNECTED:
            self.progress.learners_connected = int(event.get("connected", 0))
        elif kind == events.ROUND_STARTED:
            self.progress.round = int(event["round"])
        elif kind == events.ROUND_FINISHED:
            metrics = event.get("metrics", {})
            self.progress.metrics = dict(metrics)
            shown = ", ".join(
                f"{key}={metrics[key]:.4g}"
                for key in _SUMMARY_METRICS
                if isinstance(metrics.get(key), int | float)
            )
            self.ctx.log(f"round {event['round']}/{self.config.rounds}: {shown}")
        elif kind == events.LEARNER_FAILED:
            self.ctx.log(
                f"{event.get('learner')} failed in round {event.get('round')}: "
                f"{event.get('reason')}"
            )
        elif kind == events.WARNING:
            self.ctx.log(f"warning: {event.get('message')}")

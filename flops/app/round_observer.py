"""Rounds of a Flower app's own strategy, seen from the Grid it talks through.

A Flower app runs its own strategy, which FLOps does not wrap; what every
strategy does go through is the Grid: a batch of `train` messages starts a round,
the replies carry each learner's MetricRecords, and a batch of `evaluate`
messages (if the strategy evaluates) ends it. `ObservedGrid` hands each batch and
its replies to a `RoundObserver`, which turns them into what a contract repo's
run records: job events, per-round metrics in MLflow (the example-weighted mean
of the learners' metrics, as Flower's strategies aggregate them by default) and
each learner's own in its child run.

The round number is the `server-round` a Flower strategy puts in each message's
config; an app that sets none gets one counted per train batch. Apps that skip
`send_and_receive` (their own push/pull loop) train as usual, unobserved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, Message
from flwr.serverapp import Grid

from flops import events
from flops.app import run_settings as keys
from flops.app.grid import FastPollGrid
from flops.app.learner_roster import LearnerRoster
from flops.app.run_tracker import RunTracker

PHASES = {"train": "train_", "evaluate": "eval_"}
EXAMPLES_KEY = "num-examples"


@dataclass
class _Round:
    number: int
    started: float = field(default_factory=time.perf_counter)
    bytes_sent: int = 0
    bytes_received: int = 0
    failed: int = 0
    figures: dict[str, float] = field(default_factory=dict)
    per_learner: dict[str, dict[str, float]] = field(default_factory=dict)


def weighted_means(replies: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the replies, weighted by their `num-examples`
    (plain when a reply has none)."""
    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    for metrics in replies:
        weight = metrics.get(EXAMPLES_KEY, 1.0)
        for key, value in metrics.items():
            if key == EXAMPLES_KEY:
                continue
            totals[key] = totals.get(key, 0.0) + weight * value
            weights[key] = weights.get(key, 0.0) + weight
    return {k: totals[k] / weights[k] for k in totals if weights[k]}


def _numbers(msg: Message) -> dict[str, float]:
    found: dict[str, float] = {}
    for record in msg.content.metric_records.values():
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[key] = float(value)
    return found


class RoundObserver:
    def __init__(self, tracker: RunTracker, total_rounds: int) -> None:
        self.tracker = tracker
        self.total_rounds = total_rounds
        self.round: _Round | None = None
        self.counted = 0
        self.last_arrays: ArrayRecord | None = None
        self.roster = LearnerRoster()

    def _round_of(self, batch: list[Message], phase: str) -> int:
        for msg in batch:
            for record in msg.content.config_records.values():
                value = record.get("server-round")
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
        if phase == "train" or self.round is None:
            return self.counted + 1
        return self.round.number

    def before(self, batch: list[Message]) -> str | None:
        """A batch about to be sent: its phase (None: not a round's message)."""
        if not batch:
            return None
        phase = batch[0].metadata.message_type.split(".")[0]
        if phase not in PHASES:
            return None
        number = self._round_of(batch, phase)
        if self.round is None or number != self.round.number:
            self.finish()
            self.round = _Round(number)
            self.counted = max(self.counted, number)
            events.emit(events.ROUND_STARTED, round=number, rounds=self.total_rounds)
        for msg in batch:
            if msg.content.array_records:
                arrays = next(iter(msg.content.array_records.values()))
                self.last_arrays = arrays
                self.round.bytes_sent += arrays.count_bytes()
        return phase

    def after(
        self,
        phase: str,
        replies: list[Message],
        unanswered: Iterable[int],
        destination: Callable[[str], int | None],
    ) -> None:
        """The batch's replies: learners' metrics, failures, their MLflow logs."""
        current = self.round
        assert current is not None
        prefix = PHASES[phase]
        batch = self.roster.sort(replies, destination, unanswered)
        for learner, reason in batch.failures:
            self._failed(learner, phase, reason)
        ok: list[dict[str, float]] = []
        for learner, msg in batch.ok:
            metrics = _numbers(msg)
            ok.append(metrics)
            current.bytes_received += sum(
                a.count_bytes() for a in msg.content.array_records.values()
            )
            current.per_learner.setdefault(learner, {}).update(
                {f"{prefix}{k.replace('-', '_')}": v for k, v in metrics.items()}
            )
            if keys.LOGGED_RECORD in msg.content.config_records:
                record = msg.content.config_records[keys.LOGGED_RECORD]
                self.tracker.log_captured(learner, current.number, phase, record)
        current.figures.update(
            {f"{prefix}{k.replace('-', '_')}": v for k, v in weighted_means(ok).items()}
        )
        if phase == "evaluate":
            self.finish()

    def _failed(self, learner: str, phase: str, reason: str) -> None:
        assert self.round is not None
        self.round.failed += 1
        events.emit(
            events.LEARNER_FAILED,
            round=self.round.number,
            phase=phase,
            learner=learner,
            reason=reason,
        )

    def finish(self) -> None:
        """Close the open round (its evaluation came, the next round began, or
        the app returned): its figures into MLflow and a `round_finished` event."""
        r, self.round = self.round, None
        if r is None:
            return
        figures = {
            **r.figures,
            "round_seconds": time.perf_counter() - r.started,
            "bytes_sent": float(r.bytes_sent),
            "bytes_received": float(r.bytes_received),
            "learners_failed": float(r.failed),
            "learners_ok": float(len(r.per_learner)),
        }
        self.tracker.log_round(r.number, figures, r.per_learner)
        events.emit(
            events.ROUND_FINISHED,
            round=r.number,
            rounds=self.total_rounds,
            metrics=figures,
        )


class ObservedGrid(FastPollGrid):
    """FLOps' fast-polling Grid, showing each send_and_receive to an observer."""

    def __init__(
        self,
        inner: Grid,
        observer: RoundObserver,
        interval: float = 0.05,
        on_new_node: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(inner, interval, on_new_node)
        self.observer = observer

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        batch = list(messages)
        phase = self.observer.before(batch)
        replies = list(super().send_and_receive(batch, timeout=timeout))
        if phase is not None:
            self.observer.after(phase, replies, self.unanswered, self.destination)
        return replies

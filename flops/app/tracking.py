"""Per-round tracking: MLflow metrics at `step=round`, child runs, job events.

`TrackedStrategy` is a mixin placed in front of any Flower strategy class (see
`flops.strategies.build_strategy`). It times each round, reads every reply
(metrics, learner names, failures) before Flower aggregates, fails the run with a
readable message when fewer learners succeeded than the config requires, and
hands the figures to a `RunTracker`.

Dropouts: the first round starts once every learner is connected; later rounds
go on with those that are left as long as `min_fit`/`min_evaluate` allow. A
learner that failed, sent nothing in time, or left the federation is reported by
name (an error reply for a dead node comes from the SuperLink: the node the
message went to names the learner) and counted in the round's
`learners_failed`; when too few are left, the run fails naming who is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord

from flops import events
from flops.app import run_settings as keys
from flops.app.grid import FastPollGrid
from flops.app.learner_roster import LearnerRoster
from flops.app.run_tracker import RunTracker
from flops.config import ProjectConfig
from flops.errors import TrainingError

logger = logging.getLogger(__name__)


@dataclass
class _Round:
    number: int
    started: float
    bytes_sent: int = 0
    bytes_received: int = 0
    aggregation_seconds: float = 0.0
    slowest_learner_seconds: float = 0.0
    failed: int = 0
    train: dict[str, float] = field(default_factory=dict)
    per_learner: dict[str, dict[str, float]] = field(default_factory=dict)


def _metrics(record: MetricRecord | None, prefix: str) -> dict[str, float]:
    if record is None:
        return {}
    return {
        f"{prefix}{key.replace('-', '_')}": float(value)
        for key, value in record.items()
        if isinstance(value, int | float)
    }


class TrackedStrategy:
    """Mixin: `class X(TrackedStrategy, FedAvg)`. Configure with `track(...)`."""

    _tracker: RunTracker
    _total_rounds: int
    _min_fit: int
    _min_evaluate: int
    _learners: int
    _wait_timeout: float
    _connect_timeout: float
    _round: _Round
    _roster: LearnerRoster
    _gone: set[int]
    _grid: FastPollGrid
    signature: dict[str, str] | None = None

    def track(
        self,
        tracker: RunTracker,
        total_rounds: int,
        min_fit: int,
        min_evaluate: int,
        learners: int | None = None,
        wait_timeout: float = 600.0,
        connect_timeout: float = 120.0,
    ) -> None:
        self._tracker = tracker
        self._total_rounds = total_rounds
        self._min_fit = min_fit
        self._min_evaluate = min_evaluate
        self._learners = learners or max(min_fit, min_evaluate)
        self._wait_timeout = wait_timeout
        self._connect_timeout = connect_timeout
        self._roster = LearnerRoster()
        self._gone = set()  # nodes reported as having left

    # -- helpers -------------------------------------------------------------

    def _failed(self, learner: str, phase: str, reason: str) -> str:
        events.emit(
            events.LEARNER_FAILED,
            round=self._round.number,
            phase=phase,
            learner=learner,
            reason=reason,
        )
        return f"{learner}: {reason}"

    def _wait_for_nodes(
        self, grid: FastPollGrid, wanted: int, needed: int, timeout: float, phase: str
    ) -> None:
        """Until `wanted` learners are connected, or `timeout` passed with at least
        `needed`; else TrainingError naming who is gone (Flower's own sampling
        would wait forever)."""
        deadline = time.monotonic() + timeout
        while (connected := len(list(grid.get_node_ids()))) < wanted:
            if time.monotonic() > deadline:
                if connected >= needed:
                    return
                gone = sorted(
                    self._roster.name(n)
                    for n in grid.known_nodes - set(grid.get_node_ids())
                )
                raise TrainingError(
                    f"Round {self._round.number} {phase}: {connected} of "
                    f"{self._learners} learners connected, {needed} needed "
                    "(min_fit/min_evaluate)"
                    + (f"; gone: {', '.join(gone)}" if gone else "")
                    + "."
                )
            time.sleep(0.2)

    def _configure(
        self, server_round: int, phase: str, grid: Any, configure: Any
    ) -> list[Message]:
        """Flower's configure step on one snapshot of the connected learners, after
        reporting those that left since the last one."""
        self._grid = grid
        needed = max(self._min_fit, self._min_evaluate)
        if server_round == 1 and phase == "train":
            self._wait_for_nodes(
                grid, self._learners, needed, self._connect_timeout, phase
            )
            absent = self._learners - len(list(grid.get_node_ids()))
            if absent > 0:
                self._round.failed += absent
                events.emit(
                    events.WARNING,
                    message=f"{absent} learner(s) did not connect within "
                    f"{self._connect_timeout:.0f}s; training starts without them.",
                )
        else:
            self._wait_for_nodes(grid, needed, needed, self._wait_timeout, phase)
        snapshot = set(grid.freeze())
        try:
            messages = list(configure())
        finally:
            grid.thaw()
        for node in sorted(grid.known_nodes - snapshot - self._gone):
            self._gone.add(node)
            self._round.failed += 1
            self._failed(
                self._roster.name(node), phase, "left the federation (disconnected)"
            )
        return messages

    def _sort_replies(
        self, replies: Iterable[Message], phase: str, sampled: int
    ) -> list[tuple[str, Message]]:
        batch = self._roster.sort(
            replies, self._grid.destination, self._grid.unanswered
        )
        failures = [
            self._failed(learner, phase, why) for learner, why in batch.failures
        ]
        missing = sampled - len(batch.ok) - len(failures)
        if missing > 0:
            failures.append(f"{missing} learner(s) sent no reply in time")
        self._round.failed += len(failures)
        needed = self._min_fit if phase == "train" else self._min_evaluate
        if len(batch.ok) < needed:
            raise TrainingError(
                f"Round {self._round.number} {phase}: {len(batch.ok)} of {sampled} "
                f"learners succeeded, {needed} needed.\n" + "\n".join(failures)
            )
        return batch.ok

    def _log_captured(
        self, learner: str, msg: Message, server_round: int, phase: str
    ) -> None:
        if keys.LOGGED_RECORD in msg.content.config_records:
            record = msg.content.config_records[keys.LOGGED_RECORD]
            self._tracker.log_captured(learner, server_round, phase, record)

    def begin_round(self, server_round: int) -> None:
        """A new round's record; a round's evaluate without its train (a cluster
        the root did not sample for training) begins it too."""
        events.emit(events.ROUND_STARTED, round=server_round, rounds=self._total_rounds)
        self._round = _Round(number=server_round, started=time.perf_counter())

    def in_round(self, server_round: int) -> bool:
        current = getattr(self, "_round", None)
        return current is not None and current.number == server_round

    # -- Strategy hooks --------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        self.begin_round(server_round)
        parent = super()
        # The round starts once enough learners are connected (all, the first time).
        messages = self._configure(
            server_round,
            "train",
            grid,
            lambda: parent.configure_train(server_round, arrays, config, grid),  # type: ignore[attr-defined]
        )
        self._round.started = time.perf_counter()
        self._round.bytes_sent += arrays.count_bytes() * len(messages)
        self._train_sampled = len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ok = self._sort_replies(replies, "train", self._train_sampled)
        for learner, msg in ok:
            record = msg.content.metric_records["metrics"]
            self._round.bytes_received += sum(
                a.count_bytes() for a in msg.content.array_records.values()
            )
            self._round.slowest_learner_seconds = max(
                self._round.slowest_learner_seconds,
                _metrics(record, "").get("learner_seconds", 0.0),
            )
            self._round.per_learner.setdefault(learner, {}).update(
                _metrics(record, "train_")
            )
            self._log_captured(learner, msg, server_round, "fit")
        started = time.perf_counter()
        replies_ok = [msg for _, msg in ok]
        arrays, metrics = super().aggregate_train(server_round, replies_ok)  # type: ignore[misc]
        self._round.aggregation_seconds = time.perf_counter() - started
        if arrays is None:
            raise TrainingError(f"Round {server_round}: aggregation produced no model.")
        self._round.train = _metrics(metrics, "train_")
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        if server_round == self._total_rounds:
            config = ConfigRecord(
                {**config, keys.WANT_SIGNATURE: True, keys.FINAL_ROUND: True}
            )
        parent = super()
        messages = self._configure(
            server_round,
            "evaluate",
            grid,
            lambda: parent.configure_evaluate(server_round, arrays, config, grid),  # type: ignore[attr-defined]
        )
        self._round.bytes_sent += arrays.count_bytes() * len(messages)
        self._evaluate_sampled = len(messages)
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        ok = self._sort_replies(replies, "evaluate", self._evaluate_sampled)
        for learner, msg in ok:
            meta = msg.content.config_records[keys.META_RECORD]
            if self.signature is None and "signature-inputs" in meta:
                self.signature = {
                    part: str(meta[f"signature-{part}"])
                    for part in ("inputs", "outputs")
                    if f"signature-{part}" in meta
                }
            self._round.per_learner.setdefault(learner, {}).update(
                _metrics(msg.content.metric_records["metrics"], "eval_")
            )
            self._log_captured(learner, msg, server_round, "evaluate")
        parent: Any = super()
        metrics: MetricRecord | None = parent.aggregate_evaluate(
            server_round, [msg for _, msg in ok]
        )
        self._finish_round(_metrics(metrics, "eval_"))
        return metrics

    def _finish_round(self, evaluation: dict[str, float]) -> None:
        r = self._round
        figures = {
            **r.train,
            **evaluation,
            "round_seconds": time.perf_counter() - r.started,
            "aggregation_seconds": r.aggregation_seconds,
            "slowest_learner_seconds": r.slowest_learner_seconds,
            "bytes_sent": float(r.bytes_sent),
            "bytes_received": float(r.bytes_received),
            "learners_failed": float(r.failed),
            "learners_ok": float(len(r.per_learner)),
        }
        figures.pop("train_num_examples", None)
        self._tracker.log_round(r.number, figures, r.per_learner)
        events.emit(
            events.ROUND_FINISHED,
            round=r.number,
            rounds=self._total_rounds,
            metrics=figures,
        )


def tracked_strategy(
    config: ProjectConfig,
    tracker: RunTracker,
    connect_timeout: float,
    wait_timeout: float | None = None,
) -> TrackedStrategy:
    """The config's strategy, tracked into `tracker`, over `config.root_nodes`
    nodes (learners, or in hierarchical mode clusters); `wait_timeout`: how
    long a later round waits for enough nodes (default round_timeout)."""
    from flops.strategies import build_strategy

    strategy = build_strategy(config, TrackedStrategy)
    assert isinstance(strategy, TrackedStrategy)
    strategy.track(
        tracker,
        config.rounds,
        config.effective_min_fit,
        config.effective_min_evaluate,
        learners=config.root_nodes,
        wait_timeout=config.round_timeout if wait_timeout is None else wait_timeout,
        connect_timeout=connect_timeout,
    )
    return strategy

"""Rounds of a Flower app's own strategy as FLOps sees them through the Grid:
which round, each learner's metrics, the example-weighted means, failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from flops import events
from flops.app import run_settings as keys
from flops.app.round_observer import RoundObserver, weighted_means


class RecordingTracker:
    """Stands in for RunTracker (MLflow): keeps what it is asked to log."""

    def __init__(self) -> None:
        self.rounds: list[tuple[int, dict[str, float], dict[str, Any]]] = []

    def log_round(self, number: int, figures: Any, per_learner: Any) -> None:
        self.rounds.append((number, dict(figures), dict(per_learner)))

    def log_captured(self, *args: Any) -> None:
        raise AssertionError("nothing was captured")


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    """Flower stamps each message with the task's run and node."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


def sent(phase: str, node: int, server_round: int | None) -> Message:
    config = ConfigRecord({"server-round": server_round} if server_round else {})
    content = RecordDict({"arrays": ArrayRecord([np.ones(4)]), "config": config})
    return Message(content, dst_node_id=node, message_type=phase)


def reply(to: Message, learner: str, **metrics: float) -> Message:
    content = RecordDict(
        {
            "metrics": MetricRecord(dict(metrics)),
            keys.META_RECORD: ConfigRecord({"learner": learner}),
        }
    )
    return Message(content, reply_to=to)


def test_weighted_means_follow_num_examples() -> None:
    means = weighted_means(
        [{"num-examples": 30, "acc": 1.0}, {"num-examples": 10, "acc": 0.0}]
    )
    assert means == {"acc": 0.75}


def test_a_strategys_round_is_logged_with_each_learner(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tracker = RecordingTracker()
    observer = RoundObserver(tracker, total_rounds=2)  # type: ignore[arg-type]
    train = [sent("train", 7, 1), sent("train", 8, 1)]
    assert observer.before(train) == "train"
    replies = [
        reply(train[0], "learner-0", **{"num-examples": 30, "loss": 1.0}),
        Message(
            Error(0, "<class 'x.LearnerError'>:<'learner-1: boom'>"), reply_to=train[1]
        ),
    ]
    observer.after("train", replies, set(), lambda _: 8)
    evaluate = [sent("evaluate", 7, 1)]
    observer.before(evaluate)
    observer.after(
        "evaluate", [reply(evaluate[0], "learner-0", accuracy=0.9)], set(), lambda _: 7
    )

    ((number, figures, per_learner),) = tracker.rounds
    assert number == 1
    assert figures["train_loss"] == 1.0 and figures["eval_accuracy"] == 0.9
    assert figures["learners_failed"] == 1.0
    assert per_learner == {
        "learner-0": {
            "train_num_examples": 30.0,
            "train_loss": 1.0,
            "eval_accuracy": 0.9,
        }
    }
    kinds = [
        (e["type"], e.get("learner"))
        for line in capsys.readouterr().out.splitlines()
        if (e := events.parse_event(line))
    ]
    assert kinds == [
        ("round_started", None),
        ("learner_joined", "learner-0"),
        ("learner_failed", "learner-1"),
        ("round_finished", None),
    ]
    assert observer.last_arrays is not None


def test_rounds_are_counted_when_the_app_sets_no_server_round() -> None:
    tracker = RecordingTracker()
    observer = RoundObserver(tracker, total_rounds=3)  # type: ignore[arg-type]
    for _ in range(2):  # train only: a round ends when the next begins
        batch = [sent("train", 7, None)]
        observer.before(batch)
        observer.after(
            "train", [reply(batch[0], "learner-0", loss=0.5)], set(), lambda _: 7
        )
    observer.finish()
    assert [number for number, *_ in tracker.rounds] == [1, 2]


def test_a_node_the_superlink_lost_is_named_by_flowers_error_code() -> None:
    """A cut link reads the same whatever Flower's wording: by its error code."""
    from flwr.common.constant import ErrorCode

    from flops.app.learner_roster import NO_REPLY, UNREACHABLE, error_reason

    to = sent("train", 7, 2)
    lost = Message(
        Error(ErrorCode.NODE_UNAVAILABLE, "Error: Node Unavailable - any text"),
        reply_to=to,
    )
    expired = Message(Error(ErrorCode.REPLY_MESSAGE_UNAVAILABLE, "x"), reply_to=to)
    crashed = Message(
        Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, "<class 'ValueError'>:<'no'>"),
        reply_to=to,
    )
    assert error_reason(lost) == (None, UNREACHABLE)
    assert error_reason(expired) == (None, NO_REPLY)
    assert error_reason(crashed) == (None, "ValueError: no")

"""FastPollGrid's reply loop: every reply that came before the round gave up
is counted, even when one pull blocks past the deadline."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flwr.app import ConfigRecord, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from flops.app.grid import FastPollGrid
from flops.app.learner_roster import CUT_OFF, error_reason


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


class SlowPullGrid:
    """Flower's grid as a revoked learner leaves it: the first pull returns
    node 1's broken reply after blocking `block` seconds (Flower retrying its
    objects), while node 2's reply arrives during that pull."""

    def __init__(self, block: float) -> None:
        self.block = block
        self.sent: dict[str, Message] = {}
        self.pulls = 0

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for index, message in enumerate(messages):
            message_id = f"m{index}"
            self.sent[message_id] = message
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        wanted = set(message_ids)
        out = []
        if self.pulls == 1:
            time.sleep(self.block)
            broken = Message(
                Error(ErrorCode.MESSAGE_UNAVAILABLE, "objects unavailable"),
                reply_to=self.sent["m0"],
            )
            broken.metadata.__dict__["_reply_to_message_id"] = "m0"
            return [broken]
        if "m1" in wanted:
            ok = Message(
                RecordDict({"c": ConfigRecord({"a": 1})}), reply_to=self.sent["m1"]
            )
            ok.metadata.__dict__["_reply_to_message_id"] = "m1"
            out.append(ok)
        return out


def messages() -> list[Message]:
    return [
        Message(RecordDict(), dst_node_id=node, message_type="train") for node in (1, 2)
    ]


def test_a_reply_that_came_during_a_pull_past_the_deadline_is_counted() -> None:
    inner: Any = SlowPullGrid(block=0.3)
    grid = FastPollGrid(inner, interval=0.01)
    replies = list(grid.send_and_receive(messages(), timeout=0.1))
    assert [m.metadata.reply_to_message_id for m in replies] == ["m0", "m1"]
    assert grid.unanswered == set()
    assert error_reason(replies[0]) == (None, CUT_OFF)


def test_a_node_that_never_answers_is_unanswered_after_the_deadline() -> None:
    inner: Any = SlowPullGrid(block=0.0)
    inner.pull_messages = lambda ids: []
    grid = FastPollGrid(inner, interval=0.01)
    started = time.monotonic()
    assert list(grid.send_and_receive(messages(), timeout=0.2)) == []
    assert time.monotonic() - started >= 0.2
    assert grid.unanswered == {1, 2}

"""A Grid that polls for replies every few milliseconds instead of every 3 s.

Flower's `HttpGrid.send_and_receive` sleeps a fixed 3 s between reply pulls
(flwr/superlink/grid/http_grid.py, line 412 in flwr 1.41). This wrapper keeps
Flower's grid and its public `push_messages`/`pull_messages` and only replaces
that wait, which is most of a round's idle time on the aggregator side. It also
reports each learner the first time it shows up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run


class FastPollGrid(Grid):
    """Delegates to Flower's grid; polls replies at `interval` seconds."""

    def __init__(
        self,
        inner: Grid,
        interval: float = 0.05,
        on_new_node: Callable[[int], None] | None = None,
    ) -> None:
        self._inner = inner
        self._interval = interval
        self._on_new_node = on_new_node
        self._known: set[int] = set()

    def set_run(self, run: Run) -> None:
        self._inner.set_run(run)

    @property
    def run(self) -> Run:
        return self._inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._inner.create_message(
            content, message_type, dst_node_id, group_id, ttl
        )

    def get_node_ids(self) -> Iterable[int]:
        nodes = list(self._inner.get_node_ids())
        for node in nodes:
            if node not in self._known:
                self._known.add(node)
                if self._on_new_node is not None:
                    self._on_new_node(node)
        return nodes

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending and (deadline is None or time.monotonic() < deadline):
            received = list(self.pull_messages(pending))
            replies.extend(received)
            pending -= {msg.metadata.reply_to_message_id for msg in received}
            if pending:
                time.sleep(self._interval)
        return replies

"""A Grid that polls for replies every few milliseconds instead of every 3 s.

Flower's `HttpGrid.send_and_receive` sleeps a fixed 3 s between reply pulls
(flwr/superlink/grid/http_grid.py, line 412 in flwr 1.41). This wrapper keeps
Flower's grid and its public `push_messages`/`pull_messages` and only replaces
that wait, which is most of a round's idle time on the aggregator side. It also
reports each learner the first time it shows up, remembers which node each
message went to (an error reply for a node that died comes from the SuperLink,
whose id it carries: the destination names the learner), and can hold one
snapshot of the connected nodes while a round is configured, so a node that
drops meanwhile cannot leave Flower's sampling waiting for it forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from flops import events


def connection_reporter(needed: int) -> Callable[[int], None]:
    """`on_new_node` for FastPollGrid: a `learner_connected` event per node,
    with how many are connected and how many the run needs."""
    connected: set[int] = set()

    def on_new_node(node_id: int) -> None:
        connected.add(node_id)
        events.emit(
            events.LEARNER_CONNECTED,
            node_id=node_id,
            connected=len(connected),
            needed=needed,
        )

    return on_new_node


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
        self._destinations: dict[str, int] = {}
        self._frozen: list[int] | None = None
        # Nodes whose message got no reply in the last send_and_receive.
        self.unanswered: set[int] = set()

    @property
    def known_nodes(self) -> set[int]:
        """Every node that was ever connected in this run."""
        return set(self._known)

    def destination(self, message_id: str) -> int | None:
        """The node a pushed message went to."""
        return self._destinations.get(message_id)

    def freeze(self) -> list[int]:
        """Answer `get_node_ids` with this one snapshot until `thaw()`."""
        self._frozen = None
        self._frozen = list(self.get_node_ids())
        return list(self._frozen)

    def thaw(self) -> None:
        self._frozen = None

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
        if self._frozen is not None:
            return list(self._frozen)
        nodes = list(self._inner.get_node_ids())
        for node in nodes:
            if node not in self._known:
                self._known.add(node)
                if self._on_new_node is not None:
                    self._on_new_node(node)
        return nodes

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        batch = list(messages)
        ids = list(self._inner.push_messages(batch))
        for message_id, message in zip(ids, batch, strict=False):
            self._destinations[message_id] = message.metadata.dst_node_id
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            started = time.monotonic()
            received = list(self.pull_messages(pending))
            replies.extend(received)
            pending -= {msg.metadata.reply_to_message_id for msg in received}
            # A pull can block long past the deadline: Flower retries the
            # objects of a reply whose upload was cut off (a learner revoked
            # mid-push) for as long as the SuperLink keeps its session. The
            # others' replies that came meanwhile are collected by one more
            # pull after the deadline, never dropped as "no reply in time".
            if not pending or (deadline is not None and started >= deadline):
                break
            if deadline is None or time.monotonic() < deadline:
                time.sleep(self._interval)
        self.unanswered = {self._destinations.get(m, -1) for m in pending}
        return replies

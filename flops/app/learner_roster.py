"""Which learner each Flower node is, and a batch's replies sorted by learner.

FLOps' own strategy (`flops.app.tracking`) and a Flower app's strategy, observed
from its Grid (`flops.app.round_observer`), read replies the same way: a reply
names its learner in FLOps' meta record; an error reply names it in a
`LearnerError`, or else the node the message went to does (an error for a dead
node comes from the SuperLink); a node that sent nothing is silent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.common.constant import ErrorCode

from flops import events
from flops.app import run_settings as keys

_FLOWER_REASON = re.compile(r"^<class '(?P<cls>[^']+)'>:<'(?P<msg>.*)'>$", re.DOTALL)
NO_REPLY = "no reply in time"
CUT_OFF = "its reply did not arrive whole (expired, or its upload was cut off)"
UNREACHABLE = "unreachable (its heartbeats stopped)"
# What the SuperLink says of a node by Flower's error code (its text is
# Flower's wording, which changes between versions): the learner's machine or
# link is gone, not its code.
_NODE_REASONS = {
    ErrorCode.NODE_UNAVAILABLE: UNREACHABLE,
    ErrorCode.REPLY_MESSAGE_UNAVAILABLE: NO_REPLY,
    # Flower's grid when a reply's objects cannot be pulled, or the
    # SuperLink when the message expired.
    ErrorCode.MESSAGE_UNAVAILABLE: CUT_OFF,
}


def error_reason(msg: Message) -> tuple[str | None, str]:
    """(learner, reason) from an error reply.

    Flower wraps a ClientApp exception as `<class 'X'>:<'message'>`; FLOps'
    LearnerError messages start with the learner's name.
    """
    if msg.error.code in _NODE_REASONS:
        return None, _NODE_REASONS[msg.error.code]
    reason = msg.error.reason or "unknown error"
    match = _FLOWER_REASON.match(reason)
    if not match:
        return None, reason
    cls = match["cls"].rsplit(".", 1)[-1]
    if cls == "LearnerError":
        learner, _, message = match["msg"].partition(": ")
        return learner, message
    return None, f"{cls}: {match['msg']}"


@dataclass
class SortedReplies:
    """One batch: the learners that answered, and (learner, reason) for the
    others."""

    ok: list[tuple[str, Message]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


class LearnerRoster:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}  # node id -> learner name, from replies
        self.joined: set[str] = set()

    def name(self, node_id: int) -> str:
        return self.names.get(node_id, f"node-{node_id}")

    def learner(self, msg: Message) -> str:
        """The learner a reply came from (remembered for its node)."""
        node = msg.metadata.src_node_id
        if not msg.has_error() and keys.META_RECORD in msg.content.config_records:
            name = str(msg.content.config_records[keys.META_RECORD].get("learner"))
            self.names[node] = name
            return name
        return self.name(node)

    def sort(
        self,
        replies: Iterable[Message],
        destination: Callable[[str], int | None],
        unanswered: Iterable[int],
    ) -> SortedReplies:
        """Replies by learner; `learner_joined` for a learner's first answer;
        `unanswered` nodes (the Grid's, -1 never) that sent nothing as failures."""
        batch = SortedReplies()
        answered: set[int] = set()
        for msg in replies:
            if msg.has_error():
                named, reason = error_reason(msg)
                node = destination(msg.metadata.reply_to_message_id)
                if node is not None:
                    answered.add(node)
                learner = named or self.name(
                    node if node is not None else msg.metadata.src_node_id
                )
                batch.failures.append((learner, reason))
                continue
            learner = self.learner(msg)
            answered.add(msg.metadata.src_node_id)
            if learner not in self.joined:
                self.joined.add(learner)
                events.emit(
                    events.LEARNER_JOINED,
                    learner=learner,
                    node_id=msg.metadata.src_node_id,
                )
            batch.ok.append((learner, msg))
        for node in sorted(set(unanswered) - answered - {-1}):
            batch.failures.append((self.name(node), NO_REPLY))
        return batch

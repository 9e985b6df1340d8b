"""Structured events that learners and the aggregator write into their logs.

An actor prints one line per event: `FLOPS_EVENT {json}`. Every orchestrator can
hand back an actor's log (a local file, `docker logs`, a pod's log), so the
management service learns about rounds, learners and the final model without any
network path from the actors back to it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

PREFIX = "FLOPS_EVENT "

# Event types the aggregator emits, in the order a run produces them.
RUN_STARTED = "run_started"
LEARNER_CONNECTED = "learner_connected"
ROUND_STARTED = "round_started"
LEARNER_JOINED = "learner_joined"
LEARNER_FAILED = "learner_failed"
ROUND_FINISHED = "round_finished"
MODEL_LOGGED = "model_logged"
WARNING = "warning"
RUN_FINISHED = "run_finished"
RUN_FAILED = "run_failed"

# Hierarchical mode: a cluster's aggregator could not complete a phase of a
# root round (its reason; the root goes on if min_fit/min_evaluate allow), and
# what the service adds: a cluster whose learners are all gone.
CLUSTER_FAILED = "cluster_failed"
CLUSTER_LOST = "cluster_lost"
# The service's names for what the tiers report: the root's nodes are the
# clusters' uplinks; a cluster's own run starts and ends with the job's.
CLUSTER_CONNECTED = "cluster_connected"
CLUSTER_JOINED = "cluster_joined"  # its first answer to the root
CLUSTER_STARTED = "cluster_started"
CLUSTER_FINISHED = "cluster_finished"

# What a learner prints as it takes each task (a joined device shows it).
LEARNER_TASK = "learner_task"

# Event types the management service adds from what it sees of the actors.
NODE_REFUSED = "node_refused"  # the SuperLink refused a SuperNode's key
# Learners that join from their owners' machines (flops_management.enrolment).
LEARNER_ENROLLED = "learner_enrolled"  # a device joined the project with a token
LEARNER_REGISTERED = "learner_registered"  # its key is registered with the job
LEARNER_REVOKED = "learner_revoked"  # its owner's project revoked it


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf; a diverged loss must still reach the user readable."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def format_event(kind: str, **data: Any) -> str:
    payload = {"type": kind, "time": time.time(), **_clean(data)}
    return PREFIX + json.dumps(payload, separators=(",", ":"), default=str)


def emit(kind: str, **data: Any) -> None:
    """Write one event line to stdout, flushed so log tailers see it at once."""
    sys.stdout.write(format_event(kind, **data) + "\n")
    sys.stdout.flush()


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on this log line, or None when it is an ordinary log line."""
    start = line.find(PREFIX)
    if start < 0:
        return None
    try:
        payload = json.loads(line[start + len(PREFIX) :])
    except json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) and "type" in payload else None

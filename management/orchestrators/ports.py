"""Ports for the servers the host backends start (SuperLinks, SuperNodes'
runtime APIs, inference servers): free now, and not about to be taken.

A port the kernel hands out for `bind(0)` comes from its ephemeral range, the
same range every outgoing connection's local port comes from; between picking
it and the server binding it, any connection on the host can take it (a
learner's SuperNode lost its port that way on a busy 2-core host, and its
cluster's first round went without it). So ports are picked outside that
range, at random, checked free, and not handed out twice by this process
while they may still be about to be bound.
"""

from __future__ import annotations

import collections
import random
import socket
import threading
from pathlib import Path

# Below Linux's default ephemeral range (32768-60999) and above the well-known
# and commonly registered low ports.
LOW_RANGE = (20000, 32768)
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_RECENT = 4096  # ports handed out lately, not handed out again

_lock = threading.Lock()
_recent: collections.deque[int] = collections.deque(maxlen=_RECENT)


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports."""
    try:
        low, high = _RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def candidate_range() -> tuple[int, int]:
    """[start, stop) of ports outside the ephemeral range."""
    low, high = ephemeral_range()
    if low - LOW_RANGE[0] >= 2000:
        return LOW_RANGE[0], min(LOW_RANGE[1], low)
    return high + 1, 65536


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, outside the ephemeral range."""
    start, stop = candidate_range()
    with _lock:
        for _ in range(200):
            port = random.randrange(start, stop)  # noqa: S311 - not a secret
            if port not in _recent and _bindable(port, host):
                _recent.append(port)
                return port
    # A host whose candidates are all taken: the kernel's choice, as before.
    with socket.socket() as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen

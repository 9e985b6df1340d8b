"""Waiting with a deadline: the one polling loop FLOps uses, so each call site
says what it waits for, not how (a process's port, a deployment's end).

Standard library only: the FL-actor image's supervisor (flops.actor) uses it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def wait_until(
    done: Callable[[], bool],
    timeout: float | None,
    *,
    interval: float = 0.1,
    hopeless: Callable[[], bool] | None = None,
) -> bool:
    """True once `done()` is; False when `timeout` seconds pass first (None: no
    limit) or `hopeless()` says it never will be (the process that was to open
    the port exited). `done` is always asked once more after the last sleep."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if done():
            return True
        if hopeless is not None and hopeless():
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections at host:port now."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0

"""Ports for the servers FLOps starts: outside the kernel's ephemeral range
(where any outgoing connection could take one before its server binds it),
free, and not handed out twice."""

from __future__ import annotations

import collections
import socket

import pytest

from flops_management.orchestrators import ports


def test_ports_are_free_outside_the_ephemeral_range_and_never_repeated() -> None:
    low, high = ports.ephemeral_range()
    given = [ports.free_port() for _ in range(300)]
    assert len(set(given)) == len(given)
    assert all(not low <= port <= high for port in given)
    for port in given[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free indeed


def test_a_port_in_use_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    start, _ = ports.candidate_range()
    monkeypatch.setattr(ports, "candidate_range", lambda: (start, start + 2))
    monkeypatch.setattr(ports, "_recent", collections.deque(maxlen=10))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", start))
        taken.listen()
        assert ports.free_port() == start + 1
        # Both candidates gone (one in use, one given): the kernel's choice.
        assert ports.free_port() not in (start, start + 1)

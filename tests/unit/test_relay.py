"""The relay between a cluster's uplink and its aggregator (flops.app.relay)."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from flops.app import relay


def _serve_once(
    server: relay.RelayServer, answer: relay.Answer | str
) -> tuple[threading.Thread, list[relay.Request]]:
    """Answer one request in a thread; the requests it saw."""
    seen: list[relay.Request] = []

    def run() -> None:
        with server.next_request(timeout=10) as (request, reply):
            seen.append(request)
            reply(answer)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, seen


def test_a_request_and_its_answer_cross_with_arrays_and_config(tmp_path: Path) -> None:
    path = relay.relay_path(tmp_path / "relay")
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(0.5)]
    with relay.RelayServer(path) as server:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        answer = relay.Answer(
            metrics={"train_loss": 0.25},
            num_examples=120,
            arrays=[w * 2 for w in weights],
            meta={"signature-inputs": "[...]"},
        )
        thread, seen = _serve_once(server, answer)
        got = relay.ask(
            path,
            relay.Request(
                relay.TRAIN,
                3,
                {"server-round": 3, "blob": b"\x00\x01", "lr": 0.1},
                weights,
            ),
            timeout=10,
            connect_timeout=5,
        )
        thread.join()
    request = seen[0]
    assert (request.phase, request.server_round) == (relay.TRAIN, 3)
    assert request.config == {"server-round": 3, "blob": b"\x00\x01", "lr": 0.1}
    assert all(
        np.array_equal(a, b) for a, b in zip(request.arrays, weights, strict=True)
    )
    assert got.num_examples == 120 and got.metrics == {"train_loss": 0.25}
    assert all(
        np.array_equal(a, b * 2) for a, b in zip(got.arrays, weights, strict=True)
    )
    assert got.meta == {"signature-inputs": "[...]"}
    assert not Path(path).exists()  # removed with the server


def test_the_cluster_s_reason_reaches_the_uplink(tmp_path: Path) -> None:
    path = relay.relay_path(tmp_path)
    with relay.RelayServer(path) as server:
        thread, _ = _serve_once(
            server, "Round 2 train: 0 of 2 learners connected, 2 needed."
        )
        with pytest.raises(relay.RelayError, match="0 of 2 learners connected"):
            relay.ask(path, relay.Request(relay.EVALUATE, 2, {}, []), 10, 5)
        thread.join()


def test_no_aggregator_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(relay.RelayError, match="did not open its relay"):
        relay.ask(
            relay.relay_path(tmp_path), relay.Request(relay.TRAIN, 1, {}, []), 1, 0.5
        )

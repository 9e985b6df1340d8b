"""The relay between a cluster's uplink and its aggregator, over a Unix socket.

In hierarchical mode each cluster has two Flower roles on one host (one
container, pod or Oakestra service): a SuperNode at the root SuperLink (the
cluster's *uplink*) and a SuperLink with the ServerApp that runs the cluster's
learners (the cluster's *aggregator*). Flower has no API between a ClientApp and
a ServerApp, so the uplink's task hands the root's message to the aggregator
through this relay and replies with what comes back: one request, one answer,
per connection. The socket lives in a folder only the cluster's own processes
share (mode 0700), and the wire format is the model worker's (JSON and `.npy`,
no pickle: flops.worker.protocol).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flops.errors import FlopsError
from flops.waiting import wait_until
from flops.worker import protocol

# Phases the root sends a cluster.
TRAIN = "train"
EVALUATE = "evaluate"
# What Flower's strategies weigh a reply by: a cluster's is its learners' sum.
EXAMPLES_KEY = "num-examples"
_BYTES = "__bytes__"


class RelayError(FlopsError):
    """The cluster's aggregator could not be reached, or failed the request."""


def encode_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A ConfigRecord's values as JSON (bytes as base64, lists as they are)."""

    def one(value: Any) -> Any:
        if isinstance(value, bytes):
            return {_BYTES: base64.b64encode(value).decode()}
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {str(key): one(value) for key, value in config.items()}


def decode_config(data: Mapping[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {str(key): one(value) for key, value in data.items()}


@dataclass
class Request:
    phase: str
    server_round: int
    config: dict[str, Any]
    arrays: list[np.ndarray]
    # When the uplink stops waiting (time.time(); both ends share a host).
    expires: float | None = None

    @property
    def expired(self) -> bool:
        return self.expires is not None and time.time() > self.expires


@dataclass
class Answer:
    """What a cluster reports upward for one phase of one root round."""

    metrics: dict[str, float] = field(default_factory=dict)
    num_examples: int = 0
    arrays: list[np.ndarray] = field(default_factory=list)
    # Extra words for the reply's FLOps record (the model's signature...).
    meta: dict[str, str] = field(default_factory=dict)


def relay_path(folder: Path | str) -> str:
    return str(Path(folder) / "relay.sock")


def ask(path: str, request: Request, timeout: float, connect_timeout: float) -> Answer:
    """The uplink's side: hand one request over; the cluster's answer, or
    RelayError with the cluster's own reason (or what broke the relay)."""
    try:
        received = _exchange(path, request, timeout, connect_timeout)
    except (OSError, protocol.ProtocolError) as err:
        raise RelayError(
            f"the relay to the cluster's aggregator broke ({type(err).__name__}: {err})"
        ) from err
    if received is None:
        raise RelayError("the cluster's aggregator closed the relay without answering")
    payload, arrays = received
    if not payload.get("ok"):
        raise RelayError(str(payload.get("error", "the cluster's round failed")))
    return Answer(
        metrics={str(k): float(v) for k, v in payload.get("metrics", {}).items()},
        num_examples=int(payload.get("num_examples", 0)),
        arrays=arrays,
        meta={str(k): str(v) for k, v in payload.get("meta", {}).items()},
    )


def _exchange(
    path: str, request: Request, timeout: float, connect_timeout: float
) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The aggregator's run may still be starting: its socket comes later.
        def connected() -> bool:
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError):
                return False
            return True

        if not wait_until(connected, connect_timeout, interval=0.2):
            raise RelayError(
                f"the cluster's aggregator did not open its relay ({path}) within "
                f"{connect_timeout:.0f}s"
            )
        sock.settimeout(timeout)
        protocol.send(
            sock,
            {
                "phase": request.phase,
                "round": request.server_round,
                "config": encode_config(request.config),
                "expires": time.time() + timeout,
            },
            request.arrays,
        )
        try:
            return protocol.receive(sock)
        except TimeoutError:
            raise RelayError(
                f"the cluster's aggregator sent no answer within {timeout:.0f}s"
            ) from None
    finally:
        sock.close()


class RelayServer:
    """The cluster aggregator's side: serve requests one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = Path(path).parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(path).unlink(missing_ok=True)  # a previous run's, dead with it
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        Path(path).chmod(0o600)
        self._sock.listen(4)

    def __enter__(self) -> RelayServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()
        Path(self.path).unlink(missing_ok=True)

    @contextlib.contextmanager
    def next_request(self, timeout: float | None) -> Iterator[tuple[Request, Any]]:
        """The next request and a `reply(answer | error text)` for it; a
        connection that sends no request in time, or garbage, is dropped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._sock.settimeout(left)
            conn, _ = self._sock.accept()  # TimeoutError past the deadline
            conn.settimeout(30.0)
            try:
                received = protocol.receive(conn)
                if received is None:
                    conn.close()
                    continue
                payload, arrays = received
                request = Request(
                    phase=str(payload.get("phase")),
                    server_round=int(payload.get("round", 0)),
                    config=decode_config(payload.get("config", {})),
                    arrays=arrays,
                    expires=float(payload["expires"]) if "expires" in payload else None,
                )
            except (protocol.ProtocolError, OSError, ValueError, TypeError):
                conn.close()  # not the uplink's request: dropped
                continue
            break

        def reply(answer: Answer | str) -> None:
            conn.settimeout(60.0)
            if isinstance(answer, str):
                protocol.send(conn, {"ok": False, "error": answer})
                return
            protocol.send(
                conn,
                {
                    "ok": True,
                    "metrics": answer.metrics,
                    "num_examples": answer.num_examples,
                    "meta": answer.meta,
                },
                answer.arrays,
            )

        try:
            yield request, reply
        finally:
            conn.close()

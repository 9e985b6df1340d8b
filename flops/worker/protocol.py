"""The worker's wire format, readable by any NumPy from 1.21 on.

A message is a 4-byte big-endian length, that many bytes of UTF-8 JSON (an object
whose `arrays` member counts the arrays that follow), then each array as an 8-byte
length and its bytes in NumPy's `.npy` format, written and read without pickle.
The `.npy` format is NumPy's stable on-disk format, so a worker on NumPy 1.23 and
a Flower runtime on NumPy 2 read each other's arrays exactly.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

HEADER = struct.Struct("!I")
ARRAY = struct.Struct("!Q")
# Headers carry names and numbers; a bigger one means a broken peer.
MAX_HEADER_BYTES = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a worker message, or hung up mid-way."""


def encode(payload: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> bytes:
    body = json.dumps({**payload, "arrays": len(arrays)}).encode()
    parts = [HEADER.pack(len(body)), body]
    for array in arrays:
        buffer = io.BytesIO()
        # As is: ascontiguousarray would turn a 0-d array into a 1-d one.
        np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
        data = buffer.getvalue()
        parts += [ARRAY.pack(len(data)), data]
    return b"".join(parts)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None when the peer closed before sending any."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            if received == 0:
                return None
            raise ProtocolError(f"connection closed after {received} of {size} bytes")
        received += count
    return bytes(buffer)


def _read(sock: socket.socket, size: int) -> bytes:
    data = _read_exactly(sock, size)
    if data is None:
        raise ProtocolError("connection closed in the middle of a message")
    return data


def send(
    sock: socket.socket, payload: dict[str, Any], arrays: Sequence[np.ndarray] = ()
) -> None:
    sock.sendall(encode(payload, arrays))


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    """The next message, or None when the peer closed the connection cleanly."""
    head = _read_exactly(sock, HEADER.size)
    if head is None:
        return None
    (length,) = HEADER.unpack(head)
    if length > MAX_HEADER_BYTES:
        raise ProtocolError(f"message header of {length} bytes")
    try:
        payload = json.loads(_read(sock, length))
    except ValueError as err:
        raise ProtocolError(f"message header is not JSON: {err}") from None
    if not isinstance(payload, dict):
        raise ProtocolError("message header is not a JSON object")
    arrays = []
    for _ in range(int(payload.pop("arrays", 0))):
        (size,) = ARRAY.unpack(_read(sock, ARRAY.size))
        arrays.append(
            np.lib.format.read_array(io.BytesIO(_read(sock, size)), allow_pickle=False)
        )
    return payload, arrays

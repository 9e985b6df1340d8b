"""Size and count limits: over one the answer is 413 or 422 naming the limit, and
nothing of the request is stored; pushes of one tag never collide."""

from __future__ import annotations

import os
import socket
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.security.conftest import Tenant
from tests.stack import Stack

pytestmark = pytest.mark.integration


def _database_size(stack: Stack) -> int:
    return sum(p.stat().st_size for p in stack.home.glob("flops.db*"))


def test_a_huge_body_is_refused_before_anything_is_stored(
    stack: Stack, mallory: Tenant, example_url: str
) -> None:
    before = mallory.request("GET", "/api/projects").json()
    size_before = _database_size(stack)
    body = {"repo": example_url, "strategy_params": {"x": "a" * (2 * 1024**2)}}
    answer = mallory.submit(body)
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert "FLOPS_MAX_REQUEST_BYTES" in error["message"]
    assert mallory.request("GET", "/api/projects").json() == before
    assert _database_size(stack) - size_before < 256 * 1024


def test_a_body_without_length_is_cut_off_too(mallory: Tenant) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"repo": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    answer = mallory.request(
        "POST",
        "/api/projects",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"learners": 10000}, "limit of 100 (FLOPS_MAX_LEARNERS)"),
        ({"rounds": 100000}, "limit of 1000 (FLOPS_MAX_ROUNDS)"),
        ({"data_tags": [f"t{i}" for i in range(100)]}, "'data_tags'"),
    ],
)
def test_counts_over_the_limit_are_refused_naming_it(
    mallory: Tenant, example_url: str, config: dict[str, object], expected: str
) -> None:
    answer = mallory.submit({"repo": example_url, **config})
    assert answer.status_code == 422
    assert expected in answer.json()["error"]["message"]


def test_an_upload_over_the_limit_is_refused(mallory: Tenant) -> None:
    # A declared length over the limit is answered before a byte of it is read.
    host, port = mallory.api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            (
                "PUT /api/data/huge HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {mallory.token}\r\n"
                f"Content-Length: {600 * 1024**2}\r\n\r\n"
            ).encode()
        )
        reply = b""
        while chunk := conn.recv(65536):  # the service closes after answering
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "FLOPS_MAX_UPLOAD_BYTES" in reply
    assert "huge" not in [d["tag"] for d in mallory.request("GET", "/api/data").json()]


def test_concurrent_pushes_of_one_tag_never_fail(
    mallory: Tenant, digits_file: Path
) -> None:
    data = digits_file.read_bytes()

    def push(_: int) -> int:
        return mallory.request(
            "PUT", "/api/data/race", params={"partitions": 2}, content=data
        ).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(push, range(4))) == [201] * 4
    shown = mallory.request("GET", "/api/data/race").json()
    assert shown["rows"] == 1797 and shown["partitions"] == 2


def test_flops_home_is_private(stack: Stack) -> None:
    assert stat.S_IMODE(stack.home.stat().st_mode) == 0o700
    for path in [
        stack.home / "flops.db",
        stack.home / "token",
        stack.home / "logs" / "api.log",
    ]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    for partition in (stack.home / "data").rglob("*.parquet"):
        assert stat.S_IMODE(partition.stat().st_mode) & 0o007 == 0, partition
    assert os.access(stack.home, os.R_OK)  # the service's own user, root here

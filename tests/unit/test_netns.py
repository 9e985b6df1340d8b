"""tests/netns.py for real: a process in the namespace reaches a server on the
host across the veth link, is seen from its own address, loses the host when
the link is cut and finds it again when it is back; nothing is left behind."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import tests.netns
from tests.netns import Netns, available, netns


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

# Connects to HOST:PORT with a 2 s timeout, sends a line, prints its own address.
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
    s.sendall(b"hello from the namespace\\n")
    print(s.getsockname()[0])
"""


def connect(ns: Netns, port: int) -> subprocess.CompletedProcess[str]:
    """The client, run inside the namespace, to host_address:port."""
    return subprocess.run(
        ns.command([sys.executable, "-c", CLIENT, ns.host_address, str(port)]),
        capture_output=True,
        text=True,
        timeout=30,
    )


def namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], check=True, capture_output=True, text=True
    ).stdout


def host_links() -> str:
    return subprocess.run(
        ["ip", "-o", "link"], check=True, capture_output=True, text=True
    ).stdout


def test_available_here() -> None:
    assert available() is None


def test_a_namespace_reaches_the_host_across_the_link_and_can_be_cut() -> None:
    with netns() as ns, socket.socket() as server:
        assert ns.name.startswith("flops-t-")
        assert len(ns.host_link) <= 15 and len(ns.link) <= 15
        subnet = ipaddress.IPv4Interface(f"{ns.host_address}/30").network
        assert ipaddress.IPv4Address(ns.address) in subnet
        assert subnet.subnet_of(ipaddress.IPv4Network("10.231.0.0/16"))

        server.bind((ns.host_address, 0))
        server.listen()
        server.settimeout(10)
        port = server.getsockname()[1]

        result = connect(ns, port)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ns.address
        peer, peer_address = server.accept()
        with peer:
            assert peer_address[0] == ns.address != "127.0.0.1"
            peer.settimeout(10)
            assert peer.recv(100) == b"hello from the namespace\n"

        ns.link_down()
        cut = connect(ns, port)
        assert cut.returncode != 0
        # Refused at once (no route) or timed out: an OSError, not a crash.
        assert "unreachable" in cut.stderr or "timed out" in cut.stderr, cut.stderr

        ns.link_up()
        result = connect(ns, port)
        assert result.returncode == 0, result.stderr
        peer, peer_address = server.accept()
        peer.close()
        assert peer_address[0] == ns.address
        name, host_link = ns.name, ns.host_link
        assert name in namespaces().split()

    assert name not in namespaces().split()
    assert host_link not in host_links()


def test_the_namespace_is_removed_when_the_body_raises() -> None:
    with pytest.raises(ValueError, match="body failed"), netns() as ns:
        name = ns.name
        raise ValueError("body failed")
    assert name not in namespaces().split()


def test_parallel_namespaces_are_distinct() -> None:
    def make(_: int) -> tuple[str, str, str]:
        with netns() as ns:
            return ns.name, ns.host_address, ns.host_link

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(make, range(8)))
    with netns() as first, netns() as second:
        made += [
            (first.name, first.host_address, first.host_link),
            (second.name, second.host_address, second.host_link),
        ]
        # Held at once: different subnets.
        assert first.host_address != second.host_address
    for column in range(3):
        assert len({entry[column] for entry in made}) == len(made)


def test_a_failed_set_up_raises_with_the_command_and_stderr() -> None:
    failure = r"netns add bad/prefix-\w+ failed .*Invalid netns name"
    with pytest.raises(RuntimeError, match=failure), netns(prefix="bad/prefix"):
        pass


def test_a_set_up_failing_half_way_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last step fails: the namespace and the veth pair made before it go."""
    real = tests.netns._run
    made: list[str] = []

    def failing_route(args: list[str]) -> str:
        if args[:2] == ["netns", "add"]:
            made.append(args[2])
        if "route" in args:
            raise RuntimeError("ip route add: injected failure")
        return real(args)

    monkeypatch.setattr(tests.netns, "_run", failing_route)
    with pytest.raises(RuntimeError, match="injected failure"), netns():
        pass
    monkeypatch.undo()
    assert len(made) == 1
    assert made[0] not in namespaces().split()
    assert f"flh{made[0].rsplit('-', 1)[1]}" not in host_links()

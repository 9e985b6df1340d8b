"""Put a test's process on "another machine": a network namespace of its own.

Everything in the test suite otherwise runs on one host and talks over
loopback, which hides a whole class of faults: a service that listens on
127.0.0.1 only, an address that is right on the host but wrong anywhere else
(a URL built from "localhost"), a peer address that is never 127.0.0.1 in real
deployments, or a link that goes away mid-round. A learner or device started
with `Netns.command()` runs in a namespace joined to the host's namespace by a
veth pair, so its traffic to the host crosses a real (non-loopback) link and
the host sees it coming from `Netns.address`; `Netns.link_down()` cuts that
link as a network failure would.

The namespace reaches only the host's own addresses (`host_address`, and any
other address the host itself holds, through its default route): this module
never enables IP forwarding nor NAT, so nothing in it reaches beyond the host
(on a host that already forwards, packets could leave, but with no NAT no
answer finds its way back). A service under test must listen on `host_address`
or on 0.0.0.0 to be seen; 127.0.0.1 in the namespace is its own loopback.

Needs root and iproute2's `ip`; `available()` says why not, for skip reasons.

    with netns() as ns:
        subprocess.run(ns.command([sys.executable, "client.py", ns.host_address]))
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

# The subnets handed out, one /30 each: 16384 of them.
POOL = ipaddress.IPv4Network("10.231.0.0/16")
PREFIX_LENGTH = 30
_SUBNETS = 1 << (PREFIX_LENGTH - POOL.prefixlen)
# Every `ip` call is instant; a hung one must not hang the test run.
_TIMEOUT = 30.0

# Names and subnets this process holds, so that parallel calls (threads) never
# pick the same one; other processes' are seen on the host's interfaces.
_counter = itertools.count()
_lock = threading.Lock()
_taken: set[int] = set()


def _ip() -> str:
    path = shutil.which("ip")
    if path is None:
        raise RuntimeError("iproute2's `ip` is not on PATH")
    return path


def _run(args: list[str]) -> str:
    """Run `ip ARGS`; RuntimeError with the command and its stderr on failure."""
    command = [_ip(), *args]
    try:
        result = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=_TIMEOUT
        )
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"{' '.join(command)} failed ({error.returncode}): "
            f"{(error.stderr or '').strip()}"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(
            f"{' '.join(command)} did not finish in {_TIMEOUT:g} s"
        ) from error
    return result.stdout


def _quiet(args: list[str]) -> None:
    """Run `ip ARGS` for clean-up: failures (already gone) are no error."""
    with suppress(RuntimeError):
        _run(args)


@dataclass(frozen=True)
class Netns:
    """A network namespace joined to the host by a veth pair (see module doc)."""

    name: str  # the namespace, e.g. "flops-t-3a9f01"
    host_address: str  # the host end's IPv4 address, e.g. "10.231.7.1"
    address: str  # the namespace end's IPv4 address, e.g. "10.231.7.2"
    host_link: str  # the host-side veth name (<= 15 chars)
    link: str  # the namespace-side veth name

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside the namespace: `ip netns exec NAME ARGS...`."""
        return ["ip", "netns", "exec", self.name, *args]

    def enter(self, args: list[str]) -> list[str]:
        """`args` in the namespace's network alone (`nsenter --net`): `ip netns
        exec` also mounts a sysfs of the namespace's over /sys, which hides the
        host's cgroups from a container runtime started inside."""
        return ["nsenter", f"--net=/run/netns/{self.name}", *args]

    def link_down(self) -> None:
        """Cut the link, as a network failure would: the namespace's end goes
        down, so the namespace has no route to the host and the host's end
        loses its carrier. Established connections are not reset; they stall."""
        _run(["-n", self.name, "link", "set", self.link, "down"])

    def link_up(self) -> None:
        """Bring the link back after `link_down()`, with the default route (the
        kernel drops routes through a device that goes down)."""
        _run(["-n", self.name, "link", "set", self.link, "up"])
        _run(
            [
                "-n",
                self.name,
                "route",
                "replace",
                "default",
                "via",
                self.host_address,
                "dev",
                self.link,
            ]
        )
        _wait_carrier(self.name, self.link)


def _wait_carrier(name: str, link: str, timeout: float = 5.0) -> None:
    """Wait until both ends of the pair are up (LOWER_UP): veth usually is at
    once, but a test must not race the kernel."""
    deadline = time.monotonic() + timeout
    while True:
        state = _run(["-n", name, "-o", "link", "show", "dev", link])
        if "LOWER_UP" in state:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{link} in {name} did not come up: {state.strip()}")
        time.sleep(0.05)


def _host_networks() -> list[ipaddress.IPv4Network]:
    """The networks of every IPv4 address on the host's interfaces."""
    networks = []
    for match in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", _run(["-4", "addr"])):
        networks.append(ipaddress.IPv4Interface(match.group(1)).network)
    return networks


def _subnet(index: int) -> ipaddress.IPv4Network:
    size = 1 << (32 - PREFIX_LENGTH)
    return ipaddress.IPv4Network(
        (int(POOL.network_address) + index * size, PREFIX_LENGTH)
    )


def _claim_subnet() -> int:
    """A /30 of POOL that neither this process nor any host interface uses:
    random, so that parallel processes rarely even try the same one."""
    used = _host_networks()
    with _lock:
        start = secrets.randbelow(_SUBNETS)
        for offset in range(_SUBNETS):
            index = (start + offset) % _SUBNETS
            if index in _taken:
                continue
            subnet = _subnet(index)
            if any(subnet.overlaps(network) for network in used):
                continue
            _taken.add(index)
            return index
    raise RuntimeError(f"no free /{PREFIX_LENGTH} left in {POOL} on this host")


def _shared_elsewhere(host_address: str, host_link: str) -> bool:
    """Whether another interface of the host holds an address in our subnet
    (another process picked the same one at the same moment)."""
    subnet = ipaddress.IPv4Interface(f"{host_address}/{PREFIX_LENGTH}").network
    for line in _run(["-4", "-o", "addr"]).splitlines():
        match = re.search(r"^\d+:\s+(\S+)\s+inet (\S+)", line)
        if match is None:
            continue
        device = match.group(1).split("@")[0]
        network = ipaddress.IPv4Interface(match.group(2)).network
        if device != host_link and network.overlaps(subnet):
            return True
    return False


def _remove(name: str, host_link: str) -> None:
    _quiet(["netns", "del", name])
    # A process still running in the namespace keeps it (and the pair) alive
    # after its name is gone: delete the host's end, which takes both ends.
    _quiet(["link", "del", host_link])


def _create(prefix: str) -> tuple[Netns, int]:
    """The namespace, set up, and the index of its subnet (claimed)."""
    token = f"{next(_counter) % 256:02x}{secrets.token_hex(3)}"
    name = f"{prefix}-{token}"
    host_link, link = f"flh{token}", f"fln{token}"
    for _attempt in range(5):
        index = _claim_subnet()
        subnet = _subnet(index)
        host_ip, ns_ip = (str(host) for host in subnet.hosts())
        ns = Netns(name, host_ip, ns_ip, host_link, link)
        try:
            _run(["netns", "add", name])
            _run(["-n", name, "link", "set", "lo", "up"])
            # The peer is made inside the namespace: it never shows on the host.
            _run(
                [
                    "link",
                    "add",
                    "name",
                    host_link,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link,
                    "netns",
                    name,
                ]
            )
            _run(["addr", "add", f"{host_ip}/{PREFIX_LENGTH}", "dev", host_link])
            if _shared_elsewhere(host_ip, host_link):
                _remove(name, host_link)
                _release(index)
                continue
            _run(["link", "set", host_link, "up"])
            _run(["-n", name, "addr", "add", f"{ns_ip}/{PREFIX_LENGTH}", "dev", link])
            _run(["-n", name, "link", "set", link, "up"])
            _run(["-n", name, "route", "add", "default", "via", host_ip, "dev", link])
            _wait_carrier(name, link)
        except BaseException:
            _remove(name, host_link)
            _release(index)
            raise
        return ns, index
    raise RuntimeError(f"could not find a subnet in {POOL} no other process uses")


def _release(index: int) -> None:
    with _lock:
        _taken.discard(index)


@contextmanager
def netns(prefix: str = "flops-t") -> Iterator[Netns]:
    """A new namespace `PREFIX-XXXXXXXX` with its own /30 of 10.231.0.0/16,
    joined to the host; deleted on exit, whatever the body did. Processes the
    body started in it should be stopped before: the namespace's link to the
    host is removed regardless, so a survivor is left with no network."""
    ns, index = _create(prefix)
    try:
        yield ns
    finally:
        _remove(ns.name, ns.host_link)
        _release(index)


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None if `netns()` can work here, else why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    name = f"flops-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        _run(["netns", "add", name])
        try:
            _run(["-n", name, "link", "add", "name", "probe0", "type", "veth"])
        finally:
            _quiet(["netns", "del", name])
    except RuntimeError as error:
        return f"cannot make a network namespace with a veth pair: {error}"
    return None


# The host's own address for services that machines in namespaces dial (the
# management API, a job's Fleet front): on a link of the host's own, so it is
# the same for every namespace (each reaches it over its own veth, through its
# default route) and never a loopback address. Outside POOL, so no namespace's
# subnet overlaps it. (A veth pair with both ends here: these kernels may lack
# the dummy link type.)
SITE_ADDRESS = "10.232.255.254"


@contextmanager
def site_address(link: str = "flopssite0") -> Iterator[str]:
    """`SITE_ADDRESS` on a link of the host's, for the duration."""
    peer = link[:-1] + "1"
    _quiet(["link", "del", link])
    _run(["link", "add", link, "type", "veth", "peer", "name", peer])
    try:
        _run(["addr", "add", f"{SITE_ADDRESS}/32", "dev", link])
        _run(["link", "set", peer, "up"])
        _run(["link", "set", link, "up"])
        yield SITE_ADDRESS
    finally:
        _quiet(["link", "del", link])

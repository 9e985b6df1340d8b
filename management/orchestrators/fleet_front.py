"""The Fleet-only front of a job's SuperLink, for learners outside the host.

Flower 1.41 serves its Fleet, Control and runtime APIs on one port, and its
Control API has no authentication of its own (Flower's OIDC is an enterprise
feature): whoever reaches that port could register keys, unregister nodes or
start runs. Learners on other machines therefore never reach the SuperLink
itself. They dial this front: HAProxy (Debian's `haproxy`), which terminates
TLS with a certificate from the installation CA, passes `/v1/fleet/*` and
`/health` on to the SuperLink over TLS checked against the same CA, and
answers 403 to everything else. The config is rendered from
`images/fleet-front.haproxy.cfg` and golden-tested; the command line is built
here and tested by equality.

A backend whose job has joined learners starts it beside the SuperLink
(`start`, as a component of the job), listening on `FLOPS_FLEET_LISTEN` (or
`FLOPS_FLEET_HOST`) and reached at `FLOPS_FLEET_HOST`.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flops import subprocesses
from flops.errors import ConfigError, FlopsError
from flops.node_key import write_private
from flops.waiting import port_open, wait_until
from flops_management.images.containerfiles import render
from flops_management.orchestrators.flower_tls import JobTLS, installation_ca
from flops_management.settings import Settings

TEMPLATE = "fleet-front.haproxy.cfg"
# Long enough for a SuperNode's long poll of the Fleet API, and its heartbeats.
TIMEOUT_S = 120


def front_config(
    listen: str,
    front_pem: Path,
    superlink: str,
    ca_file: Path,
    superlink_name: str = "127.0.0.1",
) -> str:
    """HAProxy's config: listen on `listen` (host:port) with `front_pem` (the
    front's certificate and key, one PEM), forward Fleet calls to `superlink`
    (host:port) checked against `ca_file` as `superlink_name`."""
    return render(
        TEMPLATE,
        listen=listen,
        front_pem=str(front_pem),
        superlink=superlink,
        ca_file=str(ca_file),
        superlink_name=superlink_name,
        timeout_s=str(TIMEOUT_S),
    )


def haproxy() -> str:
    return subprocesses.which("haproxy", hint="apt-get install haproxy")


def haproxy_args(program: str, config: Path) -> list[str]:
    """HAProxy (`program`, from `haproxy()`) in the foreground (`-db`),
    logging to stdout, on `config`."""
    return [program, "-f", str(config), "-db"]


READY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class FrontPlan:
    """Where a job's front listens and the address learners dial."""

    host: str  # what learners dial (in the front's certificate)
    listen: str  # the bind address
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def require_host(settings: Settings) -> str:
    """The address joined learners dial, or the error saying to set it."""
    if not settings.fleet_host:
        raise ConfigError(
            "This job has learners that join from other machines, but FLOps does "
            "not know the address they dial.",
            hint="Set FLOPS_FLEET_HOST to an address or DNS name of this host that "
            "the learners' machines reach (and FLOPS_FLEET_LISTEN to bind another).",
        )
    return settings.fleet_host


def plan(settings: Settings) -> FrontPlan:
    """The front's addresses from settings (a free port when none is set)."""
    host = require_host(settings)
    listen = settings.fleet_listen or host
    port = settings.fleet_port
    if port == 0:
        with socket.socket() as sock:
            try:
                sock.bind((listen, 0))
            except OSError as err:
                raise ConfigError(
                    f"The Fleet front cannot listen on {listen} ({err}).",
                    hint="Set FLOPS_FLEET_LISTEN to an address of this host.",
                ) from err
            port = int(sock.getsockname()[1])
    return FrontPlan(host, listen, port)


def write_config(
    settings: Settings, workdir: Path, front: FrontPlan, superlink: str, tls: JobTLS
) -> Path:
    """The front's certificate (for `front.host`, from the installation CA)
    and its HAProxy config, in the job's `tls/front` (0700, the service's)."""
    folder = workdir / "tls" / "front"
    issued = installation_ca(settings).issue_server(folder, [front.host])
    pem = folder / "front.pem"
    # HAProxy takes the certificate and its key as one file.
    write_private(pem, issued.cert_path.read_bytes() + issued.key_path.read_bytes())
    config = folder / "haproxy.cfg"
    config.write_text(
        front_config(f"{front.listen}:{front.port}", pem, superlink, tls.ca_file)
    )
    return config


def start(
    settings: Settings,
    workdir: Path,
    front: FrontPlan,
    superlink: str,
    tls: JobTLS,
    log: Path,
) -> subprocess.Popen[bytes]:
    """HAProxy in front of `superlink`, answering on `front.listen:port` once
    this returns (the service's own process: tenant code never reads its key)."""
    config = write_config(settings, workdir, front, superlink, tls)
    proc = subprocesses.spawn(haproxy_args(haproxy(), config), log_path=log)
    if wait_until(
        lambda: port_open(front.listen, front.port),
        READY_TIMEOUT_S,
        hopeless=lambda: proc.poll() is not None,
    ):
        return proc
    subprocesses.kill_groups([proc], grace=1.0)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise FlopsError(
        f"The Fleet front (HAProxy) did not listen on {front.listen}:{front.port}:"
        f"\n{tail}"
    )

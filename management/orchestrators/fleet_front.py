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

Not on a job's path yet (issue 10, item 2): the orchestrators start it when a
job has learners outside the host.
"""

from __future__ import annotations

from pathlib import Path

from flops import subprocesses
from flops_management.images.containerfiles import render

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

"""A data owner's device joining a project as a learner: the device's side.

The device makes its own node key (`state/node.key`, 0600; only the public
half is sent), joins the project with its enrolment token, and polls until the
project's job has registered its key. The assignment names the SuperLink's
Fleet front to dial and carries the installation CA's certificate, which is
checked against the fingerprint inside the token (so a CA swapped on the way
is refused), then written to `state/tls/ca.crt` for the SuperNode.

Standard library only: this runs in the FL-actor image as well as in the CLI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flops.actor_commands import CA_FILE
from flops.errors import AuthError, FlopsError, ServiceUnavailableError
from flops.node_key import NodeKey

logger = logging.getLogger(__name__)

NODE_KEY_FILE = "node.key"
TLS_FOLDER = "tls"
POLL_S = 2.0
TIMEOUT_S = 30.0


def learner_name(text: str) -> str:
    """A learner name the API accepts, from a host name (`Lab-PC.example` ->
    `lab-pc-example`)."""
    name = "".join(c if c.isalnum() and c.isascii() else "-" for c in text.lower())
    return name.strip("-")[:40] or "device"


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 of the CA certificate's PEM text: what a token carries."""
    return hashlib.sha256(ca_pem.strip()).hexdigest()


TOKEN_PREFIX = "flj_"  # noqa: S105 - a prefix, not a secret
_TOKEN_RE = re.compile(r"^flj_([A-Za-z0-9_-]{32,64})\.([0-9a-f]{64})$")


@dataclass(frozen=True)
class EnrolmentToken:
    """`flj_<secret>.<sha256 of the installation CA>`: the one parser, used by
    the service that issues and checks tokens and by the device that pins the
    CA with it."""

    secret: str
    ca_sha256: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}{self.secret}.{self.ca_sha256}"

    @classmethod
    def parse(cls, text: str) -> EnrolmentToken:
        match = _TOKEN_RE.match(text.strip())
        if match is None:
            raise AuthError(
                "That is not an enrolment token (flj_<secret>.<CA fingerprint>).",
                hint="Ask the project's owner for one: `flops project enrol ID`.",
            )
        return cls(match.group(1), match.group(2))


@dataclass(frozen=True)
class Joined:
    """A device's learner, registered with the project's job."""

    assignment: dict[str, Any]
    node_key: Path
    tls_dir: Path

    @property
    def superlink(self) -> str:
        return str(self.assignment["superlink"])


class JoinClient:
    """The management API's join routes, as a device reaches them."""

    def __init__(self, api_url: str, project_id: str, token: str) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise FlopsError(
                f"The management API's URL {api_url!r} is not http(s)://HOST:PORT."
            )
        self.api_url = api_url.rstrip("/")
        self.project_id = project_id
        self.token = token.strip()
        self.fingerprint = EnrolmentToken.parse(self.token).ca_sha256

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = f"{self.api_url}/api/join/{self.project_id}{path}"
        request = urllib.request.Request(  # noqa: S310 - http(s), checked in __init__
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            raise _api_error(err) from None
        except (urllib.error.URLError, OSError) as err:
            raise ServiceUnavailableError(
                f"The FLOps management API at {self.api_url} is not reachable "
                f"from this machine ({err}).",
                hint="Check the URL (--api-url / FLOPS_API_URL) and that this "
                "machine reaches it.",
            ) from None

    def join(self, name: str, key: NodeKey) -> None:
        self._call("POST", "", {"name": name, "public_key": key.public_key})

    def assignment(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/assignment", None)
        return result


def _api_error(err: urllib.error.HTTPError) -> FlopsError:
    try:
        body = json.loads(err.read())["error"]
        message, hint = str(body["message"]), body.get("hint")
    except (ValueError, KeyError, TypeError):
        message, hint = f"HTTP {err.code} from the management API", None
    error = FlopsError(message, hint=hint)
    error.http_status = err.code
    return error


def node_key(state: Path) -> NodeKey:
    """The device's key, made on first use; kept so a restarted device is the
    same learner (its key is what the job registered)."""
    path = state / NODE_KEY_FILE
    return NodeKey.load(path) if path.exists() else NodeKey.create(path)


def write_ca(state: Path, pem: str, fingerprint: str) -> Path:
    """The CA certificate the assignment sent, once it matches the token's
    fingerprint; its folder is what `--root-certificates` reads from."""
    if ca_fingerprint(pem.encode()) != fingerprint:
        raise AuthError(
            "The CA certificate the management API sent does not match the "
            "enrolment token's fingerprint: refusing to trust it.",
            hint="Something between this machine and the API changed it; tell "
            "the project's owner.",
        )
    folder = state / TLS_FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / CA_FILE).write_text(pem.strip() + "\n")
    return folder


def join(
    client: JoinClient,
    name: str,
    state: Path,
    timeout: float,
    progress: Callable[[str], None] = lambda _: None,
) -> Joined:
    """Join and wait (up to `timeout` s) until the job registered this device."""
    key = node_key(state)
    client.join(name, key)
    progress(f"joined project {client.project_id} as {name}; waiting for its job")
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        assignment = client.assignment()
        if assignment.get("ready"):
            tls = write_ca(state, str(assignment["ca_certificate"]), client.fingerprint)
            progress(
                f"registered with job {assignment['job_id']} (node "
                f"{assignment['node_id']}); dialling {assignment['superlink']}"
            )
            return Joined(assignment, key.private_path, tls)
        message = str(assignment.get("message", "waiting"))
        if message != last:
            progress(message)
            last = message
        if time.monotonic() > deadline:
            raise FlopsError(
                f"Project {client.project_id}'s job did not register this learner "
                f"within {timeout:.0f}s.",
                hint="Ask the owner whether the project is running.",
            )
        time.sleep(POLL_S)

"""Learners that join a project from their owners' machines.

A project whose config has `joined_learners = N` leaves N of its learners to
data owners. Its owner makes enrolment tokens (`enrol`), one per learner, and
hands them out. A data owner's device makes its own node key, and joins with a
token (`join`): FLOps keeps the public half, the name and where it joined from;
the private key never leaves the device. While the project's job runs, the job
registers each joined learner's key with its SuperLink (Flower's node
authentication, `pipeline.joined`), and the device then learns where to dial
and what CA to trust (`assignment`). The owner lists who joined and revokes a
learner (`revoke`): the running job unregisters its key, which the SuperLink
refuses from then on.

A token is `flj_<secret>.<CA fingerprint>`: only the secret's SHA-256 is
stored, and the fingerprint (SHA-256 of the installation CA's certificate, as
in kubeadm's discovery hash) lets the device check the CA it is sent against
what its owner was given, so the API's own transport need not be trusted for it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flops import events
from flops.config import ProjectConfig
from flops.errors import AuthError, ConfigError, ConflictError, ForbiddenError
from flops.joining import EnrolmentToken, ca_fingerprint
from flops_management.models import Enrolment, Project, utcnow
from flops_management.orchestrators.flower_tls import installation_ca
from flops_management.settings import Settings
from flops_management.store import Store

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# Placed learners are `learner-<i>`: a joined one may not pass for one of them.
_PLACED_NAME_RE = re.compile(r"^learner-\d+$")
MAX_PUBLIC_KEY_CHARS = 1024


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Assignment:
    """What a joined device needs to run its learner in the project's job."""

    job_id: str
    name: str
    superlink: str  # host:port of the Fleet front it dials
    ca_certificate: str  # PEM
    node_id: int
    partition_id: int
    num_partitions: int
    data_tags: tuple[str, ...]
    # The job's FL-actor image (container backends), or where its Python
    # environments are on the service's host (local backend).
    image: str | None
    environment: str | None
    runtime_environment: str | None
    repo_dir: str | None
    flower_app: str | None


def _ca_pem(settings: Settings) -> bytes:
    return installation_ca(settings).cert_path.read_bytes()


@dataclass(frozen=True)
class Issued:
    """Enrolment tokens, shown once (only their digests are stored)."""

    tokens: list[str]
    expires_at: datetime


def enrol(
    settings: Settings, store: Store, project: Project, count: int, ttl: timedelta
) -> Issued:
    """`count` new enrolment tokens for the project's joined learners."""
    if project.status.finished:
        raise ConflictError(
            f"Project {project.id} is {project.status.value}; enrol learners "
            "before or while it runs.",
            hint="Submit the project again with joined_learners set.",
        )
    # The effective config once the job has read the repo's flops.toml; the
    # submission's until then.
    slots = int((project.config or project.requested_config).get("joined_learners", 0))
    live = [e for e in store.list_enrolments(project.id) if e.revoked_at is None]
    if count < 1 or len(live) + count > slots:
        raise ConfigError(
            f"Project {project.id} leaves {slots} learner(s) to join and has "
            f"{len(live)} live enrolment token(s); {count} more would exceed that.",
            hint="Submit with joined_learners = N (flops.toml or "
            "--joined-learners), or revoke a learner to free its place.",
        )
    fingerprint = ca_fingerprint(_ca_pem(settings))
    expires = utcnow() + ttl
    tokens = []
    for _ in range(count):
        token = EnrolmentToken(secrets.token_urlsafe(32), fingerprint)
        store.put_enrolment(
            Enrolment(
                digest=_digest(token.secret),
                project_id=project.id,
                tenant=project.tenant,
                expires_at=expires,
            )
        )
        tokens.append(str(token))
    return Issued(tokens, expires)


def _authenticate(store: Store, project_id: str, token_text: str) -> Enrolment:
    """The enrolment a device's token stands for, in this project, still valid."""
    token = EnrolmentToken.parse(token_text)
    enrolment = store.find_enrolment(_digest(token.secret))
    if enrolment is None or enrolment.project_id != project_id:
        raise AuthError(f"The enrolment token is not valid for project {project_id}.")
    if enrolment.revoked_at is not None:
        raise ForbiddenError(
            f"Learner {enrolment.learner or '(not joined)'} was revoked by the "
            f"owner of project {project_id}.",
            hint="Ask the project's owner for a new enrolment token.",
        )
    return enrolment


def check_public_key(public_key: str) -> str:
    """An OpenSSH public key on a NIST curve (what Flower registers), or a
    ConfigError saying what it is instead."""
    text = public_key.strip()
    if len(text) > MAX_PUBLIC_KEY_CHARS:
        raise ConfigError("The node's public key is too long to be an EC key.")
    try:
        loaded = serialization.load_ssh_public_key(text.encode())
    except (ValueError, UnicodeError) as err:
        raise ConfigError(
            f"The node's public key is not an OpenSSH key: {err}"
        ) from None
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise ConfigError(
            f"The node's public key is a {type(loaded).__name__}; Flower's node "
            "authentication needs an EC key on a NIST curve."
        )
    return text


def join(
    store: Store,
    project_id: str,
    token_text: str,
    name: str,
    public_key: str,
    address: str,
) -> Enrolment:
    """Bind a device (its name and public key) to an enrolment token. Joining
    again with the same name and key is a no-op (a device restarting)."""
    enrolment = _authenticate(store, project_id, token_text)
    if not _NAME_RE.match(name) or _PLACED_NAME_RE.match(name):
        raise ConfigError(
            f"Learner name {name!r} must be 1-40 lowercase letters, digits or "
            "'-', and not learner-<number> (the placed learners' names)."
        )
    key = check_public_key(public_key)
    if enrolment.learner is not None:
        if enrolment.learner == name and enrolment.public_key == key:
            store.update_enrolment(
                enrolment.digest, address=address, last_seen=utcnow()
            )
            return store.find_enrolment(enrolment.digest) or enrolment
        raise ConflictError(
            f"This enrolment token was already used by learner {enrolment.learner}.",
            hint="Each token admits one learner; ask the owner for another.",
        )
    if enrolment.expires_at < utcnow():
        raise AuthError(
            "The enrolment token has expired.",
            hint="Ask the project's owner for a new one: `flops project enrol ID`.",
        )
    taken = {e.learner for e in store.list_enrolments(project_id) if e.learner}
    if name in taken:
        raise ConflictError(
            f"A learner named {name} already joined project {project_id}.",
            hint="Join with another --name.",
        )
    now = utcnow()
    claimed = store.claim_enrolment(
        enrolment.digest,
        learner=name,
        public_key=key,
        address=address,
        joined_at=now,
        last_seen=now,
    )
    if not claimed:
        raise ConflictError("This enrolment token was used by another learner.")
    store.append_event(
        project_id,
        events.LEARNER_ENROLLED,
        {
            "learner": name,
            "address": address,
            "message": f"{name} joined from {address}",
        },
    )
    joined = store.find_enrolment(enrolment.digest)
    assert joined is not None
    return joined


def assignment(
    settings: Settings, store: Store, project_id: str, token_text: str, address: str
) -> Assignment | None:
    """Where the device's learner goes, once the job registered its key (None
    until then). Every call counts as the device being seen."""
    enrolment = _authenticate(store, project_id, token_text)
    if enrolment.learner is None:
        raise ConflictError("Join with this token first (`flops learner join`).")
    store.update_enrolment(enrolment.digest, address=address, last_seen=utcnow())
    project = store.get_project(project_id)
    if project.status.finished:
        raise ConflictError(
            f"Project {project_id} has ended ({project.status.value}).",
            hint="Nothing is left to train; the owner can submit it again.",
        )
    runtime = project.runtime or {}
    fleet = runtime.get("fleet_address")
    if enrolment.node_id is None or enrolment.job_id != project_id or not fleet:
        return None
    config = ProjectConfig.model_validate(project.config)
    names = sorted(e.learner for e in store.list_enrolments(project_id) if e.learner)
    joined_index = names.index(enrolment.learner)
    return Assignment(
        job_id=project_id,
        name=enrolment.learner,
        superlink=str(fleet),
        ca_certificate=_ca_pem(settings).decode(),
        node_id=enrolment.node_id,
        partition_id=config.placed_learners + joined_index,
        num_partitions=config.learners,
        data_tags=tuple(config.data_tags),
        image=runtime.get("image"),
        environment=runtime.get("environment"),
        runtime_environment=runtime.get("runtime_environment"),
        repo_dir=runtime.get("repo_dir"),
        flower_app=runtime.get("flower_clientapp"),
    )


def learners(store: Store, project_id: str) -> list[Enrolment]:
    """The project's enrolments, joined or not, oldest first."""
    return store.list_enrolments(project_id)


def revoke(store: Store, project_id: str, name: str) -> Enrolment:
    """Revoke a joined learner: the running job unregisters its key, and its
    token admits nothing from then on."""
    for enrolment in store.list_enrolments(project_id):
        if enrolment.learner == name and enrolment.revoked_at is None:
            store.update_enrolment(enrolment.digest, revoked_at=utcnow())
            store.append_event(
                project_id,
                events.LEARNER_REVOKED,
                {"learner": name, "message": f"{name} was revoked by the owner"},
            )
            revoked = store.find_enrolment(enrolment.digest)
            assert revoked is not None
            return revoked
    raise ConfigError(
        f"No learner named {name} has joined project {project_id} (or it is "
        "already revoked).",
        hint="`flops project learners ID` lists who joined.",
    )

"""API tokens: bearer tokens mapped to a tenant; only their SHA-256 is stored.

The local profile generates one admin token for tenant `local` into
FLOPS_HOME/token (mode 0600), which the CLI reads. The production profile has no
default: FLOPS_ADMIN_TOKEN seeds the first admin, who creates tenant tokens.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from flops.errors import AuthError, ConfigError, ForbiddenError
from flops_management.models import Token
from flops_management.settings import Settings
from flops_management.store import Store

logger = logging.getLogger(__name__)

LOCAL_TENANT = "local"
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class Principal:
    tenant: str
    admin: bool


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "flops_" + secrets.token_urlsafe(32)


def check_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant):
        raise ConfigError(
            f"Tenant {tenant!r} must be 1-40 lowercase letters, digits or '-'."
        )
    return tenant


def issue(store: Store, tenant: str, *, admin: bool = False, name: str = "") -> str:
    """Create a token for a tenant; the value is returned once and never stored."""
    value = new_token()
    store.put_token(
        Token(digest=digest(value), tenant=check_tenant(tenant), admin=admin, name=name)
    )
    return value


def write_token_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    path.chmod(0o600)


def ensure_local_token(settings: Settings) -> str:
    """The local profile's token, created on first use (mode 0600)."""
    path = settings.token_file
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = new_token()
    write_token_file(path, value)
    return value


def bootstrap(settings: Settings, store: Store) -> None:
    """Register the profile's initial admin token with the store."""
    if settings.profile == "local":
        value = ensure_local_token(settings)
        store.put_token(
            Token(digest=digest(value), tenant=LOCAL_TENANT, admin=True, name="local")
        )
    elif settings.admin_token is not None:
        value = settings.admin_token.get_secret_value()
        store.put_token(
            Token(digest=digest(value), tenant="admin", admin=True, name="bootstrap")
        )
    else:
        logger.warning(
            "No FLOPS_ADMIN_TOKEN set: only tokens already in the store are accepted."
        )


def authenticate(store: Store, authorization: str | None) -> Principal:
    """Resolve an `Authorization: Bearer ...` header to a tenant."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError(
            "Missing bearer token.",
            hint="Send 'Authorization: Bearer <token>' (the CLI: FLOPS_HOME/token).",
        )
    token = store.find_token(digest(authorization[7:].strip()))
    if token is None:
        raise AuthError("Invalid token.")
    return Principal(tenant=token.tenant, admin=token.admin)


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise ForbiddenError("Only admin tokens may do this.")

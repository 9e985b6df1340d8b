"""The OCI registry images are pushed to, and what is already in it.

Embedded default: CNCF distribution (`docker-registry`) on loopback, storage in
FLOPS_HOME/registry, plain HTTP. Production: any registry (`FLOPS_REGISTRY`),
TLS verified, credentials from a containers-auth.json (`FLOPS_REGISTRY_AUTH_FILE`)
or from FLOPS_REGISTRY_USERNAME/FLOPS_REGISTRY_PASSWORD, which are written to an
auth file readable by this user only: credentials never appear in a command line.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from flops import subprocesses
from flops.errors import CommandError, FlopsError
from flops_management.settings import Settings

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def registry_config(settings: Settings) -> str:
    """The embedded registry's config (JSON is YAML): loopback, storage in home."""
    config = {
        "version": 0.1,
        "log": {"level": "warn", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(settings.registry_dir / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{settings.registry_port}"},
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass(frozen=True)
class ImageInfo:
    """An image in the registry: its reference pinned by digest, and platforms."""

    reference: str
    digest: str
    platforms: list[str] = field(default_factory=list)

    @property
    def pinned(self) -> str:
        """name@sha256:..., what a user pulls to get exactly this image."""
        name, _, tag = self.reference.rpartition(":")
        return f"{name if '/' not in tag else self.reference}@{self.digest}"

    def as_dict(self) -> dict[str, object]:
        return {
            "reference": self.pinned,
            "tag": self.reference,
            "digest": self.digest,
            "platforms": self.platforms,
        }


@dataclass(frozen=True)
class Registry:
    address: str
    tls_verify: bool
    auth_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        address = settings.registry_address.rstrip("/")
        host = address.split("/", 1)[0].rsplit(":", 1)[0]
        verify = settings.registry_tls_verify
        if verify is None:
            verify = host not in LOOPBACK_HOSTS
        return cls(address, verify, _auth_file(settings, address.split("/", 1)[0]))

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.address}/{repository}:{tag}"

    def transport_args(self) -> list[str]:
        """TLS and credential options shared by buildah push/pull and skopeo."""
        args = [f"--tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.auth_file is not None:
            args += ["--authfile", str(self.auth_file)]
        return args

    def inspect_args(self, reference: str, *, raw: bool) -> list[str]:
        args = ["skopeo", "inspect", *self.transport_args()]
        args += ["--raw"] if raw else ["--format", "{{.Digest}}"]
        return [*args, f"docker://{reference}"]

    def find(self, reference: str) -> ImageInfo | None:
        """The image under `reference`, or None when the registry has no such tag."""
        try:
            raw = subprocesses.run(self.inspect_args(reference, raw=True), timeout=60)
        except CommandError as err:
            if "manifest unknown" in err.output or "not found" in err.output.lower():
                return None
            raise FlopsError(
                f"Cannot reach the registry {self.address}: "
                + err.output.strip().splitlines()[-1],
                hint="Is it running (`flops status`)? For another registry set "
                "FLOPS_REGISTRY and its credentials.",
            ) from err
        digest = subprocesses.run(
            self.inspect_args(reference, raw=False), timeout=60
        ).strip()
        return ImageInfo(reference, digest.splitlines()[-1], _platforms(raw))


def _platforms(raw: str) -> list[str]:
    manifest = json.loads(raw[raw.find("{") :])
    entries = manifest.get("manifests")
    if not entries:
        return []  # a single-platform image: its platform is in its config blob
    return [
        f"{entry['platform']['os']}/{entry['platform']['architecture']}"
        for entry in entries
        if "platform" in entry
    ]


def _auth_file(settings: Settings, host: str) -> Path | None:
    if settings.registry_auth_file is not None:
        if not settings.registry_auth_file.is_file():
            raise FlopsError(
                f"FLOPS_REGISTRY_AUTH_FILE {settings.registry_auth_file} does not "
                "exist.",
                hint="Point it at the auth.json `podman login` writes.",
            )
        return settings.registry_auth_file
    if settings.registry_username is None or settings.registry_password is None:
        return None
    secret = settings.registry_password.get_secret_value()
    token = base64.b64encode(f"{settings.registry_username}:{secret}".encode())
    path = settings.home / "run" / "registry-auth.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"auths": {host: {"auth": token.decode()}}}, handle)
    return path

"""A learner's own key: what Flower's SuperNode authentication knows it by.

With node authentication on, a SuperLink lets a SuperNode pull tasks only when
the node's public key was registered with it beforehand (`flwr supernode
register`, through its Control API); every Fleet request is signed with the
private key. Flower 1.41 reads an unencrypted OpenSSH-format private key on a
NIST curve (`flower-supernode --auth-supernode-private-key`) and registers an
OpenSSH public key. The key is made where the learner runs (a joined device
makes its own, so the private key never leaves it), written 0600, and never
logged.

A revoked key cannot be registered again (the SuperLink keeps it, unique): a
learner let back in gets a new key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flops.errors import ConfigError

PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class NodeKey:
    """A learner's key pair on disk: `<name>` (private) and `<name>.pub`."""

    private_path: Path

    @property
    def public_path(self) -> Path:
        return self.private_path.with_name(self.private_path.name + ".pub")

    @property
    def public_key(self) -> str:
        """The OpenSSH public key line (`ecdsa-sha2-nistp384 AAAA...`)."""
        return self.public_path.read_text().strip()

    def public_pem(self) -> bytes:
        """The public key as the Control API registers it (PEM, SPKI)."""
        return public_pem(self.public_key)

    @classmethod
    def create(cls, private_path: Path) -> NodeKey:
        """A new P-384 key pair; the private key is 0600 from its first byte."""
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(private_path, private)
        node_key = cls(private_path)
        node_key.public_path.write_bytes(public + b"\n")
        return node_key

    @classmethod
    def load(cls, private_path: Path) -> NodeKey:
        """An existing key pair; refused when its private key is readable by
        others or is not a NIST-curve OpenSSH key (what Flower accepts)."""
        try:
            mode = private_path.stat().st_mode & 0o777
            data = private_path.read_bytes()
        except OSError as err:
            raise ConfigError(
                f"Cannot read the node key {private_path}: {err}"
            ) from err
        if mode & 0o077:
            raise ConfigError(
                f"The node key {private_path} is readable by others (mode "
                f"{mode:o}): `chmod 600 {private_path}`."
            )
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except ValueError as err:
            raise ConfigError(
                f"{private_path} is not an unencrypted OpenSSH private key: {err}"
            ) from err
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(
                f"{private_path} is a {type(key).__name__}; Flower's node "
                "authentication needs an EC key on a NIST curve "
                "(`ssh-keygen -t ecdsa -b 384`)."
            )
        node_key = cls(private_path)
        if not node_key.public_path.exists():
            node_key.public_path.write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
                )
                + b"\n"
            )
        return node_key


def public_pem(openssh_public_key: str) -> bytes:
    """An OpenSSH public key line as the Control API registers it (PEM, SPKI)."""
    loaded = serialization.load_ssh_public_key(openssh_public_key.strip().encode())
    return loaded.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a file no other user can read at any moment (created
    0600, not chmod-ed after the fact); an existing file is replaced."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)

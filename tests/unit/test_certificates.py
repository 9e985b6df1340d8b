"""The installation CA, SuperLink certificates and learners' node keys: what a
TLS client and Flower's own key loaders accept, and files no one else reads."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flwr.cli.supernode.register import try_load_public_key

from flops.errors import ConfigError
from flops.node_key import NodeKey
from flops_management.certificates import CertificateAuthority


def handshake(issued_cert: Path, issued_key: Path, ca: Path, dialled: str) -> None:
    """A TLS server with the issued certificate on 127.0.0.1; a client that
    trusts only `ca` connects, checking the name it dialled."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(issued_cert, issued_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname=dialled) as tls,
        ):
            tls.sendall(b"x")
    finally:
        thread.join(timeout=10)
        listener.close()


def test_a_superlink_certificate_is_trusted_for_the_addresses_it_names(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "tls")
    issued = ca.issue_server(tmp_path / "job", ["127.0.0.1", "superlink.flops"])
    handshake(issued.cert_path, issued.key_path, issued.ca_path, "127.0.0.1")
    handshake(issued.cert_path, issued.key_path, issued.ca_path, "superlink.flops")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(issued.cert_path, issued.key_path, issued.ca_path, "10.0.0.9")


def test_another_installations_ca_does_not_verify_it(tmp_path: Path) -> None:
    ours = CertificateAuthority.load_or_create(tmp_path / "ours")
    theirs = CertificateAuthority.load_or_create(tmp_path / "theirs")
    issued = ours.issue_server(tmp_path / "job", ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(issued.cert_path, issued.key_path, theirs.cert_path, "127.0.0.1")


def test_keys_are_private_and_the_ca_is_made_once(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "tls")
    issued = ca.issue_server(tmp_path / "job", ["127.0.0.1"])
    for key in (ca.key_path, issued.key_path):
        assert key.stat().st_mode & 0o777 == 0o600
    first = ca.cert_path.read_bytes()
    again = CertificateAuthority.load_or_create(tmp_path / "tls")
    assert again.cert_path.read_bytes() == first


def test_a_ca_key_others_can_read_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "tls")
    ca.key_path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        CertificateAuthority.load_or_create(tmp_path / "tls")


def test_a_server_certificate_is_not_taken_as_a_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "tls")
    issued = ca.issue_server(tmp_path / "job", ["127.0.0.1"])
    with pytest.raises(ConfigError, match="not a CA certificate"):
        CertificateAuthority(issued.cert_path, issued.key_path).check()


def test_a_node_key_is_what_flower_registers_and_signs_with(tmp_path: Path) -> None:
    key = NodeKey.create(tmp_path / "keys" / "learner-0")
    assert key.private_path.stat().st_mode & 0o777 == 0o600
    assert key.public_key.startswith("ecdsa-sha2-nistp384 ")
    # `flwr supernode register` and `flower-supernode` load them so.
    assert try_load_public_key(key.public_path)
    serialization.load_ssh_private_key(key.private_path.read_bytes(), None)
    assert NodeKey.load(key.private_path).public_key == key.public_key
    assert NodeKey.create(tmp_path / "keys" / "learner-1").public_key != key.public_key


def test_a_node_key_others_can_read_or_of_another_kind_is_refused(
    tmp_path: Path,
) -> None:
    key = NodeKey.create(tmp_path / "learner-0")
    key.private_path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        NodeKey.load(key.private_path)
    other = tmp_path / "ed"
    other.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    other.chmod(0o600)
    with pytest.raises(ConfigError, match="NIST curve"):
        NodeKey.load(other)


def test_each_job_gets_a_superlink_certificate_and_learners_only_the_ca(
    tmp_path: Path,
) -> None:
    from flops_management.orchestrators.flower_tls import issue_job_tls
    from flops_management.settings import Settings

    settings = Settings(home=tmp_path / "home")
    first = issue_job_tls(settings, tmp_path / "job1", ["127.0.0.1"], None)
    second = issue_job_tls(settings, tmp_path / "job2", ["127.0.0.1"], None)
    assert first is not None and second is not None
    assert sorted(p.name for p in first.superlink.iterdir()) == [
        "ca.crt",
        "superlink.crt",
        "superlink.key",
    ]
    assert [p.name for p in first.ca.iterdir()] == ["ca.crt"]  # no key for learners
    assert (first.superlink / "superlink.key").stat().st_mode & 0o777 == 0o600
    # One installation CA, made once in FLOPS_HOME, issues every job's.
    assert first.ca_file.read_bytes() == second.ca_file.read_bytes()
    assert (
        first.ca_file.read_bytes() == (settings.flower_ca_dir / "ca.crt").read_bytes()
    )
    assert (first.superlink / "superlink.crt").read_bytes() != (
        second.superlink / "superlink.crt"
    ).read_bytes()


def test_plaintext_flower_traffic_is_a_dev_switch_production_refuses(
    tmp_path: Path,
) -> None:
    from flops_management.orchestrators.flower_tls import issue_job_tls
    from flops_management.settings import Settings

    dev = Settings(home=tmp_path, dev_insecure_flower=True)
    assert issue_job_tls(dev, tmp_path / "job", ["127.0.0.1"], None) is None
    with pytest.raises(ConfigError, match="FLOPS_DEV_INSECURE_FLOWER"):
        Settings(home=tmp_path, profile="production", dev_insecure_flower=True)


def test_the_superlinks_refusal_of_a_node_is_read_from_its_log() -> None:
    from flops_management.orchestrators.node_auth import refusal

    # As Flower 1.41's SuperLink logs it (ANSI colours included).
    line = (
        "\x1b[91mERROR \x1b[0m:     [/v1/fleet/activate-node][ApiError:2004] "
        "Attempted to register SuperNode with public key: b'-----BEGIN PUBLIC "
        "KEY-----\\n...', exception: No SuperNode found with the given public key."
    )
    assert refusal(line) == ("/v1/fleet/activate-node", 2004)
    assert refusal("[/v1/fleet/pull-messages][ApiError:3001] run not found") is None
    assert refusal("INFO: [Fleet.ActivateNode] Activated node_id=1") is None

"""The installation's certificate authority, and the SuperLink certificates it issues.

Every Flower connection a job opens is TLS (issue 10): learners, the executor
and the `flwr` CLI verify the SuperLink against the installation's CA, whose
certificate is all they are given. FLOps makes the CA on first use in
`FLOPS_HOME/tls/` (or takes one from settings: an operator's own intermediate)
and issues each job's SuperLink a certificate for exactly the addresses its
learners dial. Flower 1.41 serves its Fleet, Control and Runtime APIs on one
port, so one certificate covers them all.

Keys are EC P-256, written 0600 at creation; nothing here is ever logged.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flops.errors import ConfigError
from flops.node_key import write_private

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=90)
# Clocks of devices that join are not ours: a certificate valid from a little
# before it was made does not fail on a learner a few minutes behind.
CLOCK_SKEW = datetime.timedelta(minutes=10)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def subject_alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, the rest as DNS names (what clients dial)."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@dataclass(frozen=True)
class ServerCertificate:
    """A SuperLink's TLS files: what `flower-superlink --ssl-*` takes."""

    ca_path: Path
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class CertificateAuthority:
    cert_path: Path
    key_path: Path

    @classmethod
    def load_or_create(
        cls, folder: Path, name: str = "FLOps installation CA"
    ) -> CertificateAuthority:
        """The CA in `folder` (ca.crt, ca.key), made there on first use."""
        ca = cls(folder / "ca.crt", folder / "ca.key")
        if ca.cert_path.exists() and ca.key_path.exists():
            ca.check()
            return ca
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - CLOCK_SKEW)
            .not_valid_after(_now() + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
            )
            .sign(key, hashes.SHA256())
        )
        write_private(ca.key_path, _pem_key(key))
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def check(self) -> None:
        """A CA from settings or an earlier run: readable, a CA, its key private."""
        try:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            mode = self.key_path.stat().st_mode & 0o777
        except (OSError, ValueError) as err:
            raise ConfigError(f"Cannot use the CA {self.cert_path}: {err}") from err
        if mode & 0o077:
            raise ConfigError(
                f"The CA key {self.key_path} is readable by others (mode {mode:o}): "
                f"`chmod 600 {self.key_path}`."
            )
        try:
            constraints = cert.extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ConfigError(
                f"{self.cert_path} is not a CA certificate (no BasicConstraints "
                "ca=true); give FLOps a CA that may issue server certificates."
            )

    def issue_server(self, folder: Path, hosts: list[str]) -> ServerCertificate:
        """A SuperLink certificate for `hosts` (IPs and DNS names learners dial),
        with the CA's certificate beside it, in `folder`."""
        if not hosts:
            raise ConfigError("A SuperLink certificate needs at least one address.")
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        ca_key = serialization.load_pem_private_key(
            self.key_path.read_bytes(), password=None
        )
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"The CA key {self.key_path} is not an EC key.")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
            )
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - CLOCK_SKEW)
            .not_valid_after(_now() + SERVER_LIFETIME)
            .add_extension(
                x509.SubjectAlternativeName(subject_alternative_names(hosts)), False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
            )
            # Python 3.13's ssl verifies strictly (VERIFY_X509_STRICT): both
            # key identifiers must be there.
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        issued = ServerCertificate(
            ca_path=folder / "ca.crt",
            cert_path=folder / "superlink.crt",
            key_path=folder / "superlink.key",
        )
        write_private(issued.key_path, _pem_key(key))
        issued.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.ca_path.write_bytes(self.cert_path.read_bytes())
        return issued

"""One job's TLS for Flower traffic, issued from the installation CA.

Every Flower connection a job opens is TLS: the SuperLink serves the
certificate issued here for the addresses its learners and the `flwr` CLI dial
(the backend knows them), and every client checks it against the installation
CA (`certificates.CertificateAuthority`, made in `FLOPS_HOME/ca` on first use,
or the one `FLOPS_FLOWER_CA` names). The SuperLink's key goes only to the
aggregator; learners get the CA certificate alone. Plaintext is what
`FLOPS_DEV_INSECURE_FLOWER` asks for, and only the local profile allows it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from flops.actor_commands import CA_FILE
from flops_management.certificates import CertificateAuthority
from flops_management.file_lock import file_lock
from flops_management.sandbox import Identity, sandbox_for
from flops_management.settings import Settings


@dataclass(frozen=True)
class JobTLS:
    # ca.crt, superlink.crt, superlink.key: the SuperLink's (the aggregator's).
    superlink: Path
    # ca.crt alone: learners, the aggregator's executor, the `flwr` CLI.
    ca: Path

    @property
    def ca_file(self) -> Path:
        return self.ca / CA_FILE


def installation_ca(settings: Settings) -> CertificateAuthority:
    folder = settings.flower_ca_dir
    # Two first jobs would each make a CA, and one would lose.
    with file_lock(folder.parent / f".{folder.name}.lock"):
        return CertificateAuthority.load_or_create(folder)


def issue_job_tls(
    settings: Settings, workdir: Path, hosts: list[str], identity: Identity | None
) -> JobTLS | None:
    """The job's TLS folders under `workdir/tls`, the tenant's to read (its
    actors run as it), or None for plaintext (`dev_insecure_flower`)."""
    if settings.dev_insecure_flower:
        return None
    root = workdir / "tls"
    issued = installation_ca(settings).issue_server(root / "superlink", hosts)
    ca = root / "ca"
    ca.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(issued.ca_path, ca / CA_FILE)
    sandbox_for(settings).give(root, identity)
    return JobTLS(superlink=issued.ca_path.parent, ca=ca)

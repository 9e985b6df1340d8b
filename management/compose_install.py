"""What `docker-compose.yml` needs before its first build (`flops compose prepare`).

Every image the compose install builds starts from the FL-actor images' base
(`localhost/flops/base:<recipe>-<arch>`, bootstrapped offline from the Debian
mirror when container storage does not hold it). Their Python packages are
installed here, on the build host, into one folder of the build context
(`.cache/compose/site`) that the management and MLflow images both COPY: no
pip inside a build, so a build needs no index, proxy or certificate of its own,
and both images share that layer. Debian packages (PostgreSQL, the registry,
Buildah) come from the Debian mirror inside the builds.

The secrets (admin token, database and registry passwords) are generated once
into `.env` beside docker-compose.yml (0600) and never overwritten, so a second
`prepare` keeps what the stack already stores; the registry's TLS certificate
is issued by a CA of the install's own in `.cache/compose/certs` (replace both
for production: README, "Install beside your orchestrator").
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flops import subprocesses
from flops.errors import ConfigError
from flops.node_key import write_private
from flops_management.certificates import CertificateAuthority
from flops_management.images import commands as cmd
from flops_management.images.base import BaseImages, native_platform
from flops_management.images.registry import Registry
from flops_management.images.site import _uv, prune
from flops_management.settings import Settings

Log = Callable[[str], None]

CONTEXT_DIR = Path(".cache") / "compose"
# FLOps with what its management service needs, and MLflow's PostgreSQL driver
# and S3 client (artifacts on S3-compatible storage, an option).
SITE_REQUIREMENTS = [".[management,cli]", "psycopg2-binary>=2.9,<3", "boto3>=1.34"]
# A real MongoDB wire-protocol server from PyPI, for hosts that cannot pull
# `mongo` (the test override, docker-compose.test.yml).
TEST_STORE_REQUIREMENTS = ["SecantusDB==0.7.0b3"]
GENERATED_SECRETS = (
    "FLOPS_ADMIN_TOKEN",
    "POSTGRES_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_SECRET_KEY",
    "REGISTRY_PASSWORD",
)
DEFAULTS = {
    "FLOPS_API_PORT": "8470",
    "MLFLOW_PORT": "5000",
    "REGISTRY_PORT": "5001",
    "MONGO_PORT": "27017",
    "REGISTRY_USERNAME": "flops",
    # Bound at the same path on both sides: the engine mounts job folders by it.
    "FLOPS_HOST_HOME": "/var/lib/flops",
    "CONTAINER_SOCKET": "/run/podman/podman.sock",
    # JSON, quoted as compose's .env reader keeps it whole.
    "FLOPS_ORCHESTRATORS": "'[\"docker\"]'",
}


@dataclass(frozen=True)
class ComposeContext:
    checkout: Path

    @property
    def folder(self) -> Path:
        return self.checkout / CONTEXT_DIR

    @property
    def env_file(self) -> Path:
        # Beside docker-compose.yml: where docker compose and podman-compose
        # (which has no --env-file) both read it.
        return self.checkout / ".env"

    @property
    def certs(self) -> Path:
        return self.folder / "certs"

    @property
    def certs_d(self) -> Path:
        """certs.d/<registry>/ca.crt: as Podman and Buildah look a CA up."""
        return self.folder / "certs.d"

    @property
    def site(self) -> Path:
        return self.folder / "site"

    @property
    def store_site(self) -> Path:
        return self.folder / "store-site"


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (as compose reads them), comments and blanks skipped."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def environment(
    existing: dict[str, str], base_image: str, overrides: dict[str, str]
) -> dict[str, str]:
    """The install's settings: what is stored wins over defaults (secrets are
    made once), explicit overrides win over both."""
    values = {**DEFAULTS, **existing, "FLOPS_BASE_IMAGE": base_image, **overrides}
    # Where the management service and the engine push and pull images.
    values.setdefault("FLOPS_REGISTRY", f"127.0.0.1:{values['REGISTRY_PORT']}")
    values.setdefault(
        "FLOPS_STORE_URL", f"mongodb://127.0.0.1:{values['MONGO_PORT']}/flops"
    )
    for name in GENERATED_SECRETS:
        if not values.get(name):
            values[name] = secrets.token_hex(32 if name.endswith("TOKEN") else 24)
    return values


def render_env(values: dict[str, str]) -> str:
    return (
        "# The compose install's settings (flops compose prepare); keep it secret.\n"
        + "".join(f"{key}={value}\n" for key, value in sorted(values.items()))
    )


def point_scripts_at(site: Path, python: str = "/usr/bin/python3") -> None:
    """uv writes the build host's interpreter into console scripts' first line;
    in the image they run with the image's."""
    for script in (site / "bin").glob("*"):
        if not script.is_file():
            continue
        with script.open("rb") as handle:
            first = handle.readline()
        if first.startswith(b"#!") and b"python" in first:
            rest = script.read_bytes()[len(first) :]
            script.write_bytes(f"#!{python}\n".encode() + rest)


def folder_digest(folder: Path) -> str:
    """The content of `folder` (paths and bytes), as a short hex digest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def registry_hosts(extra: list[str]) -> list[str]:
    """Where the engine and users reach the registry: loopback, this host's name,
    and any address the operator adds (`--host`)."""
    hosts = ["127.0.0.1", "localhost", socket.gethostname(), *extra]
    return list(dict.fromkeys(host for host in hosts if host))


class ComposePreparation:
    def __init__(self, settings: Settings, checkout: Path, log: Log) -> None:
        self.settings = settings
        self.context = ComposeContext(checkout)
        self.log = log
        if not (checkout / "docker-compose.yml").exists():
            raise ConfigError(
                f"{checkout} holds no docker-compose.yml.",
                hint="Run `flops compose prepare` in a FLOps checkout.",
            )

    def base_image(self) -> str:
        """The FL-actor images' base for this host, bootstrapped offline from the
        Debian mirror when container storage does not hold it yet."""
        bases = BaseImages(
            self.settings, Registry.from_settings(self.settings), self.log
        )
        return bases.ensure_local(native_platform())

    def settings_file(self, overrides: dict[str, str]) -> dict[str, str]:
        env_file = self.context.env_file
        values = environment(read_env(env_file), self.base_image(), overrides)
        env_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(env_file, render_env(values).encode())
        self.log(f"settings and secrets: {env_file}")
        return values

    def certificates(self, hosts: list[str], registry: str) -> None:
        ca = CertificateAuthority.load_or_create(
            self.context.certs, "FLOps compose install CA"
        )
        folder = self.context.certs / "registry"
        if not (folder / "registry.crt").exists():
            issued = ca.issue_server(folder, hosts)
            issued.cert_path.rename(folder / "registry.crt")
            issued.key_path.rename(folder / "registry.key")
        trusted = self.context.certs_d / registry.split("/", 1)[0]
        trusted.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca.cert_path, trusted / "ca.crt")
        self.log(f"registry certificate for {', '.join(hosts)}: {folder}")

    def site(self, target: Path, requirements: list[str]) -> None:
        # Made afresh each time: it holds this checkout's FLOps (uv's cache
        # makes the rest quick).
        shutil.rmtree(target, ignore_errors=True)
        self.log(f"installing {' '.join(requirements)} into {target}")
        subprocesses.run(
            # Builds allowed: FLOps itself is built from this checkout (pure
            # Python), and the image is this host's platform.
            cmd.site_install_args(
                _uv(),
                target,
                native_platform(),
                self.settings.base_python,
                requirements,
                self.settings.find_links,
                self.settings.index_url,
                no_build=False,
            ),
            cwd=self.context.checkout,
            timeout=self.settings.env_build_timeout,
            hint="uv must reach the package index (or FLOPS_FIND_LINKS).",
        )
        prune(target, keep_tools=True)
        point_scripts_at(target)

    def run(
        self,
        hosts: list[str],
        overrides: dict[str, str],
        test_store: bool,
        packages: bool = True,
    ) -> dict[str, str]:
        """`packages=False` changes settings only (the images are as built)."""
        digests = {}
        if packages:
            self.site(self.context.site, SITE_REQUIREMENTS)
            digests["FLOPS_SITE_DIGEST"] = folder_digest(self.context.site)
        if packages and test_store:
            self.site(self.context.store_site, TEST_STORE_REQUIREMENTS)
            digests["FLOPS_STORE_SITE_DIGEST"] = folder_digest(self.context.store_site)
        values = self.settings_file({**overrides, **digests})
        self.certificates(registry_hosts(hosts), values["FLOPS_REGISTRY"])
        # The folder the service and the engine share: only root's.
        Path(values["FLOPS_HOST_HOME"]).mkdir(mode=0o700, parents=True, exist_ok=True)
        return values

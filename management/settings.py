"""The management service's settings: one pydantic-settings class, env prefix FLOPS_.

The `local` profile is the embedded default (`flops up`): everything on loopback,
state under FLOPS_HOME, a token generated into FLOPS_HOME. The `production`
profile has no credential defaults at all: tokens, the store and MLflow must be
configured explicitly.
"""

from __future__ import annotations

import configparser
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flops.errors import ConfigError

DEFAULT_API_PORT = 8470
DEFAULT_MLFLOW_PORT = 8471
DEFAULT_REGISTRY_PORT = 8472
DOCKER_SOCKET = Path("/var/run/docker.sock")


PIP_CONFIG_FILES = (
    Path("/etc/pip.conf"),
    Path("/etc/xdg/pip/pip.conf"),
    Path.home() / ".config" / "pip" / "pip.conf",
    Path.home() / ".pip" / "pip.conf",
)


def _default_find_links() -> list[str]:
    """The host's pip `find-links` (env first, then pip's config files).

    uv does not read pip's configuration, but a host that points pip at a folder
    of wheels (say, the CPU build of torch) means it for learner environments too.
    """
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    for path in PIP_CONFIG_FILES:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        links += parser.get("global", "find-links", fallback="").split()
    return list(dict.fromkeys(link for link in links if link))


class Settings(BaseSettings):
    # An empty variable is an unset one (compose passes every name through).
    model_config = SettingsConfigDict(
        env_prefix="FLOPS_", extra="ignore", env_ignore_empty=True
    )

    profile: Literal["local", "production"] = "local"
    home: Path = Field(default_factory=lambda: Path.home() / ".flops")

    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    # Where the service reaches MLflow, and the actors too unless
    # mlflow_actor_uri says otherwise (actors on other machines, or outside the
    # compose network the service is in, reach it at another address).
    mlflow_tracking_uri: str | None = None
    mlflow_actor_uri: str | None = None
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    # The admin of MLflow's basic-auth app (flops_management.mlflow_access); the
    # local profile generates the password into FLOPS_HOME/mlflow.
    mlflow_admin_username: str = "admin"
    mlflow_admin_password: SecretStr | None = None
    # sqlite:///path or mongodb://...; default: sqlite file in home
    store_url: str | None = None
    # production: the first admin token (hash stored, value never logged)
    admin_token: SecretStr | None = None

    max_concurrent_jobs: int = Field(default=2, ge=1)
    # Limits on what one tenant can make the service run or store (limits.py).
    max_active_jobs_per_tenant: int = Field(default=4, ge=1)
    max_learners: int = Field(default=100, ge=1)
    max_rounds: int = Field(default=1000, ge=1)
    # Where tenants may place a hierarchical project's clusters: the node names,
    # the label keys (any value) and the orchestrator's own clusters (Oakestra's)
    # the operator allows, as JSON lists
    # (FLOPS_PLACEMENT_NODES='["edge-a"]'). Empty: no placement is allowed, so
    # a tenant cannot pin its code to nodes the operator keeps for others.
    placement_nodes: list[str] = Field(default_factory=list)
    placement_label_keys: list[str] = Field(default_factory=list)
    placement_clusters: list[str] = Field(default_factory=list)
    # The backends this install runs jobs on (JSON list); empty: every known one.
    # The compose install leaves out `local`, whose learners would run inside
    # the management container.
    orchestrators: list[str] = Field(default_factory=list)
    # A JSON request body; a data upload (streamed to disk, never held whole).
    max_request_bytes: int = Field(default=1024**2, ge=1024)
    max_upload_bytes: int = Field(default=512 * 1024**2, ge=1024)
    # Stored text: a project's error, one event's line, actor output per job.
    max_error_chars: int = Field(default=8000, ge=200)
    max_event_chars: int = Field(default=4000, ge=200)
    max_actor_log_events: int = Field(default=2000, ge=10)
    # How often the aggregator polls for learner replies, and executors for tasks.
    poll_interval: float = Field(default=0.05, gt=0, le=5)
    learner_connect_timeout: float = Field(default=120.0, gt=0)
    stage_timeout: float = Field(default=3600.0, gt=0)

    # Building learner environments (local orchestrator)
    env_installer: Literal["uv", "pip"] = "uv"
    find_links: list[str] = Field(default_factory=_default_find_links)
    index_url: str | None = None
    env_build_timeout: float = Field(default=1800.0, gt=0)

    # Images (container orchestrators, inference images). `registry` is where
    # images are pushed: host[:port][/namespace]; default: the embedded registry.
    registry: str | None = None
    registry_port: int = DEFAULT_REGISTRY_PORT
    # None: verify TLS except for a registry on loopback (the embedded one).
    registry_tls_verify: bool | None = None
    # A containers-auth.json (as `podman login` writes) or a username/password
    # pair; never part of the code or the images.
    registry_auth_file: Path | None = None
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    # A pullable Python image (e.g. docker.io/library/python:3.11-slim-bookworm);
    # None or unreachable: bootstrap Debian bookworm with debootstrap.
    base_image: str | None = None
    # The Python minor version of the base image (the bootstrapped one: 3.11).
    base_python: str = "3.11"
    debian_mirror: str = "http://deb.debian.org/debian"
    # The host's CA bundle for builds behind a TLS-intercepting proxy.
    ca_bundle: Path | None = None
    build_timeout: float = Field(default=1800.0, gt=0)
    # unix:///... or tcp://...; None: the Docker socket when there is one, else
    # the Podman service `flops up` starts.
    docker_host: str | None = None
    # "host": actors share the host's network (learners still publish nothing);
    # any other name: a network of that name (created when missing).
    docker_network: str = "host"
    # Passed to every container as soft=hard. Rootful Podman in a restricted
    # sandbox (these machines) may neither raise nor inherit them; {} leaves
    # the engine's defaults.
    docker_ulimits: dict[str, int] = Field(
        default_factory=lambda: {"nofile": 1024, "nproc": 1024}
    )

    # The address inference servers are published on; 0.0.0.0 serves every
    # interface (their URL then names this host).
    inference_host: str = "127.0.0.1"

    # Tenant code runs sandboxed (flops_management.sandbox) as uid/gid
    # tenant_uid_base + the tenant's number when the service is root.
    tenant_uid_base: int = Field(default=2_000_000, ge=1000, le=2**31 - 2**20)
    # Development only: run tenant code as the service, with its environment and
    # files in reach. Refused by the production profile.
    dev_unsandboxed_tenant_code: bool = False
    # Flower traffic in plaintext (`--insecure`), for debugging on one host:
    # anything that reaches a SuperLink could then read or join a run.
    # Refused by the production profile.
    dev_insecure_flower: bool = False
    # Learners that join from other machines dial a job's Fleet-only front
    # (orchestrators/fleet_front.py) at fleet_host (an address or DNS name of
    # this host they reach; it is in the front's certificate), on fleet_port
    # (0: a free port per job). fleet_listen: the address it binds (default:
    # fleet_host; 0.0.0.0 for every interface).
    fleet_host: str | None = None
    fleet_listen: str | None = None
    fleet_port: int = Field(default=0, ge=0, le=65535)
    # How long a new enrolment token admits a learner (seconds).
    enrolment_ttl: float = Field(default=7 * 24 * 3600.0, gt=0)
    # The CA that issues SuperLinks' certificates (ca.crt, ca.key); default:
    # FLOPS_HOME/ca, made on first use
    # (orchestrators/flower_tls.py).
    flower_ca: Path | None = None

    @model_validator(mode="after")
    def _check_profile(self) -> Settings:
        if self.profile == "production" and self.dev_insecure_flower:
            raise ConfigError(
                "FLOPS_DEV_INSECURE_FLOWER is a development switch; the "
                "production profile always uses TLS for Flower traffic."
            )
        if self.profile == "production" and self.dev_unsandboxed_tenant_code:
            raise ConfigError(
                "FLOPS_DEV_UNSANDBOXED_TENANT_CODE is a development switch; the "
                "production profile always sandboxes tenant code."
            )
        if self.profile == "production":
            missing = [
                name
                for name, value in (
                    ("FLOPS_STORE_URL", self.store_url),
                    ("FLOPS_MLFLOW_TRACKING_URI", self.mlflow_tracking_uri),
                    ("FLOPS_MLFLOW_ADMIN_PASSWORD", self.mlflow_admin_password),
                )
                if not value
            ]
            if missing:
                raise ConfigError(
                    f"The production profile needs {', '.join(missing)} to be set."
                )
        return self

    def ensure_home(self) -> Path:
        """FLOPS_HOME, created (or tightened to) 0700: only the service reaches
        what is in it; tenant code sees the parts its sandbox binds."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        return self.home

    @cached_property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def actor_tracking_uri(self) -> str:
        """Where learners and aggregators reach MLflow."""
        return self.mlflow_actor_uri or self.tracking_uri

    @property
    def actors_see_loopback_mlflow(self) -> bool:
        """The actors' MLflow address is the service's loopback, which actors
        in containers of their own (or on other machines) cannot reach."""
        return self.actor_tracking_uri.startswith(
            ("http://127.0.0.1", "http://localhost")
        )

    @cached_property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'flops.db'}"

    @property
    def registry_address(self) -> str:
        return self.registry or f"127.0.0.1:{self.registry_port}"

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry"

    @property
    def podman_socket(self) -> Path:
        return self.home / "run" / "podman.sock"

    @property
    def docker_url(self) -> str:
        if self.docker_host:
            return self.docker_host
        if DOCKER_SOCKET.exists():
            return f"unix://{DOCKER_SOCKET}"
        return f"unix://{self.podman_socket}"

    @property
    def images_dir(self) -> Path:
        """Build contexts, host-side dependency installs and base root filesystems."""
        return self.home / "images"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def envs_dir(self) -> Path:
        return self.home / "envs"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def token_file(self) -> Path:
        return self.home / "token"

    @property
    def flower_ca_dir(self) -> Path:
        return self.flower_ca or self.home / "ca"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

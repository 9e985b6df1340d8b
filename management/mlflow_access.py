"""Who reaches MLflow, and what they see: MLflow's own basic-auth app.

MLflow runs with `--app-name basic-auth` and `default_permission =
NO_PERMISSIONS`: nobody sees anything unless granted. Three kinds of users:

- the service's admin (its password generated into FLOPS_HOME for the local
  profile, configured for production), which creates experiments and runs and
  registers models;
- one user per tenant (`flops-t<n>`, an opaque name: any MLflow user may list
  user names), granted READ on each of its experiments and registered models;
  its password is issued by `POST /api/mlflow/credentials` (`flops mlflow
  credentials`), which replaces the previous one;
- one user per job (`flops-j<project id>`), used by the job's aggregator alone:
  EDIT on the job's experiment, denied every registered model, deleted when the
  job ends. Learners never get an MLflow credential.

MLflow lets any user create experiments and registered models, so a tenant could
create one under another tenant's name first. The service therefore claims each
name in its own store the first time it creates it, and refuses to use a name
that exists in MLflow without its claim.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flops.errors import ConfigError, TrainingError
from flops_management.pipeline.tracking import Tracking
from flops_management.settings import Settings
from flops_management.store import Store

USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105 - a variable's name
READ, EDIT, DENY = "READ", "EDIT", "DENY"


@dataclass(frozen=True)
class MlflowCredentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"MlflowCredentials({self.username}, ***)"

    def as_env(self) -> dict[str, str]:
        return {USERNAME_ENV: self.username, PASSWORD_ENV: self.password}


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)


def _local_secret(path: Path) -> str:
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def admin_credentials(settings: Settings) -> MlflowCredentials:
    """The service's MLflow admin: configured, or generated for the local profile."""
    if settings.mlflow_admin_password is not None:
        password = settings.mlflow_admin_password.get_secret_value()
    elif settings.profile == "local":
        password = _local_secret(settings.mlflow_dir / "admin-password")
    else:
        raise ConfigError(
            "The production profile needs FLOPS_MLFLOW_ADMIN_PASSWORD: the admin "
            "of the MLflow server's basic-auth app."
        )
    return MlflowCredentials(settings.mlflow_admin_username, password)


def auth_config(settings: Settings, admin: MlflowCredentials) -> str:
    """MLflow's basic-auth configuration (written 0600; it holds the admin's
    first password, which MLflow reads once, when it creates the admin)."""
    return (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{settings.mlflow_dir / 'auth.db'}\n"
        f"admin_username = {admin.username}\n"
        f"admin_password = {admin.password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each request otherwise re-checks the password hash 3-4 times (slow);
        # with one worker a password change or deletion still applies at once.
        "auth_cache_ttl_seconds = 60\n"
    )


def server_environment(settings: Settings) -> dict[str, str]:
    """What the embedded MLflow server needs to run its auth app."""
    admin = admin_credentials(settings)
    config = settings.mlflow_dir / "auth.ini"
    _write_secret(config, auth_config(settings, admin))
    return {
        # MLflow's job runners (seven processes, ~250 MB each) serve GenAI
        # features FLOps does not use.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _local_secret(
            settings.mlflow_dir / "flask-secret"
        ),
    }


def use_admin_credentials(settings: Settings) -> None:
    """Make this process (the service) talk to MLflow as its admin. MLflow's client
    reads credentials from its environment only; tenant processes never inherit
    the service's environment (flops_management.sandbox)."""
    os.environ.update(admin_credentials(settings).as_env())


def tenant_username(tenant_index: int) -> str:
    return f"flops-t{tenant_index}"


def job_username(project_id: str) -> str:
    return f"flops-j{project_id[:16]}"


class MlflowAccess:
    """The admin side of MLflow's auth app: users and their grants."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._app_client: Any = None

    def _client(self) -> Any:
        """The auth app's client, made (and MLflow's reachability checked: a 503,
        not a trace) once per instance."""
        if self._app_client is None:
            import mlflow.server

            Tracking(self.settings.tracking_uri).check_reachable()
            self._app_client = mlflow.server.get_app_client(
                "basic-auth", tracking_uri=self.settings.tracking_uri
            )
        return self._app_client

    def _user_exists(self, username: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self._client().get_user(username)
        except MlflowException:
            return False
        return True

    def tenant_user(self, tenant: str) -> str:
        """The tenant's MLflow user, created (with a password nobody knows yet)."""
        username = tenant_username(self.store.tenant_index(tenant))
        if not self._user_exists(username):
            self._client().create_user(username, secrets.token_urlsafe(32))
        return username

    def issue_tenant_credentials(self, tenant: str) -> MlflowCredentials:
        """A new password for the tenant's user; the previous one stops working."""
        username = self.tenant_user(tenant)
        password = secrets.token_urlsafe(32)
        self._client().update_user_password(username, password)
        return MlflowCredentials(username, password)

    def create_job_user(self, project_id: str) -> MlflowCredentials:
        """The job's aggregator's user: no grant yet but a veto on every model."""
        username = job_username(project_id)
        if self._user_exists(username):  # a restart's leftover
            self._client().delete_user(username)
        password = secrets.token_urlsafe(32)
        self._client().create_user(username, password)
        self._client().grant_user_permission(username, "registered_model", "*", DENY)
        return MlflowCredentials(username, password)

    def grant(self, username: str, kind: str, resource: str, permission: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client().grant_user_permission(username, kind, resource, permission)
        except MlflowException as err:
            if "ALREADY_EXISTS" not in str(err.error_code):
                raise

    def delete_job_user(self, project_id: str) -> None:
        if self._user_exists(job_username(project_id)):
            self._client().delete_user(job_username(project_id))

    def claim(self, kind: str, name: str, tenant: str, exists: bool) -> None:
        """Claim an MLflow experiment or model name for the tenant; TrainingError
        when the name is another's, or exists in MLflow without FLOps' claim
        (somebody made it first, outside FLOps)."""
        owner = self.store.mlflow_name_owner(kind, name)
        if owner is None and not exists:
            self.store.claim_mlflow_name(kind, name, tenant)
            return
        if owner == tenant:
            return
        raise TrainingError(
            f"The MLflow {kind} name '{name}' was created outside FLOps (or by "
            "another tenant); FLOps will not put this project's runs or models "
            "into it.",
            hint="Submit the project under another name (--name).",
        )

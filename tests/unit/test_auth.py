import stat
from pathlib import Path

import pytest

from flops.errors import AuthError, ConfigError, ForbiddenError
from flops_management import auth
from flops_management.settings import Settings
from flops_management.store import open_store


def test_local_profile_token_file_is_private_and_accepted(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store = open_store(settings.store)
    auth.bootstrap(settings, store)
    token = settings.token_file.read_text().strip()
    assert stat.S_IMODE(settings.token_file.stat().st_mode) == 0o600
    principal = auth.authenticate(store, f"Bearer {token}")
    assert principal == auth.Principal(tenant="local", admin=True)
    # Stored by hash only.
    assert store.find_token(token) is None
    auth.bootstrap(settings, store)  # idempotent: same token
    assert settings.token_file.read_text().strip() == token


def test_missing_or_wrong_tokens(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db'}")
    with pytest.raises(AuthError, match="Missing bearer token"):
        auth.authenticate(store, None)
    with pytest.raises(AuthError, match="Invalid token"):
        auth.authenticate(store, "Bearer nope")


def test_issued_tokens_belong_to_their_tenant(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db'}")
    value = auth.issue(store, "team-b")
    principal = auth.authenticate(store, f"Bearer {value}")
    assert principal.tenant == "team-b" and not principal.admin
    with pytest.raises(ForbiddenError):
        auth.require_admin(principal)


def test_production_profile_has_no_default_credentials(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        profile="production",
        store_url=f"sqlite:///{tmp_path}/db",
        mlflow_tracking_uri="http://mlflow:5000",
        mlflow_admin_password="configured-by-the-operator",
    )
    store = open_store(settings.store)
    auth.bootstrap(settings, store)
    assert not settings.token_file.exists()


def test_production_profile_needs_mlflows_admin_and_refuses_the_dev_switch(
    tmp_path: Path,
) -> None:
    base = {
        "home": tmp_path,
        "profile": "production",
        "store_url": f"sqlite:///{tmp_path}/db",
        "mlflow_tracking_uri": "http://mlflow:5000",
    }
    with pytest.raises(ConfigError, match="FLOPS_MLFLOW_ADMIN_PASSWORD"):
        Settings(**base)
    with pytest.raises(ConfigError, match="development switch"):
        Settings(**base, mlflow_admin_password="x", dev_unsandboxed_tenant_code=True)

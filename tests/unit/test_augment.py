"""The generated Flower app: golden structure, and Flower's own validator accepts it."""

import tomllib
from pathlib import Path

from flwr.common.config import validate_config

from flops.app import run_settings as keys
from flops_management.pipeline import augment


def test_generated_app_is_a_valid_flower_app(tmp_path: Path) -> None:
    files = augment.write_app(
        tmp_path, "mnist", {keys.CONFIG: "{}", keys.POLL_INTERVAL: 0.05}
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in files) == [
        "flops_app/__init__.py",
        "flops_app/client_app.py",
        "flops_app/server_app.py",
        "pyproject.toml",
    ]
    config = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    valid, errors, _ = validate_config(config, check_module=True, project_dir=tmp_path)
    assert valid, errors
    app = config["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "flops_app.server_app:app",
        "clientapp": "flops_app.client_app:app",
    }
    assert app["config"][keys.MLFLOW_RUN_ID] == ""  # declared so `flwr run` may set it
    assert app["config"][keys.POLL_INTERVAL] == 0.05
    assert (
        "create_server_app()" in (tmp_path / "flops_app" / "server_app.py").read_text()
    )


def test_run_overrides_only_touch_per_run_keys() -> None:
    text = augment.run_overrides({keys.MLFLOW_RUN_ID: "abc"})
    assert tomllib.loads(text) == {keys.MLFLOW_RUN_ID: "abc"}
    try:
        augment.run_overrides({keys.CONFIG: "{}"})
    except ValueError as err:
        assert "not per-run keys" in str(err)
    else:
        raise AssertionError("expected ValueError")

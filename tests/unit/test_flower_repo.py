"""A Flower app repo read as FLOps runs it: its components, run config, Flower
pin and the problems a user can make, each named."""

from __future__ import annotations

from pathlib import Path

import pytest

from flops.contract import check_repo
from flops.errors import ContractError
from flops.flower_repo import FlowerApp, merged_config, runtime_requirements
from flops_management.pipeline import augment

FIXTURE = Path(__file__).parents[1] / "fixtures" / "repos" / "flower-sklearn-tabular"

PYPROJECT = """
[project]
name = "app"
version = "1.0.0"
dependencies = ["flwr>=1.20", "torch"]

[tool.flwr.app]
publisher = "me"

[tool.flwr.app.components]
serverapp = "{server}"
clientapp = "app.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 3
{extra}
"""


def app_repo(
    tmp_path: Path, server: str = "app.server_app:app", extra: str = ""
) -> Path:
    (tmp_path / "app").mkdir()
    for module in ("__init__", "server_app", "client_app"):
        (tmp_path / "app" / f"{module}.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        PYPROJECT.format(server=server, extra=extra)
    )
    return tmp_path


def test_the_quickstart_fixture_is_read_as_a_flower_app() -> None:
    report = check_repo(FIXTURE, flwr_version="1.41.0")
    assert report.flower_app == FlowerApp(
        serverapp="sklearnexample.server_app:app",
        clientapp="sklearnexample.client_app:app",
        config={
            "num-server-rounds": 3,
            "fraction-train": 1.0,
            "local-epochs": 1,
            "penalty": "l2",
            "data-tag": "iris",
        },
    )
    assert report.dependencies.requirements == (
        "scikit-learn>=1.6.1",
        "pandas>=2.0",
        "pyarrow>=14",
        "flwr==1.41.0",
    )


def test_every_problem_of_an_app_is_named_at_once(tmp_path: Path) -> None:
    repo = app_repo(
        tmp_path,
        server="app.missing:app",
        extra='flops-config = "x"\nnested = [1, 2]',
    )
    with pytest.raises(ContractError) as caught:
        check_repo(repo, flwr_version="1.41.0")
    text = str(caught.value)
    assert "app.missing:app' names a module that is not in the repo" in text
    assert "'flops-config' is reserved for FLOps" in text
    assert "'nested' holds a table or list" in text


def test_flower_is_pinned_to_the_runtimes_version_and_a_clash_is_said() -> None:
    kept, notes = runtime_requirements(("flwr[simulation]>=1.20", "torch"), "1.41.0")
    assert kept == ["torch", "flwr==1.41.0"]
    assert "'simulation' extra (Ray) is left out" in notes[0]
    kept, notes = runtime_requirements(("flwr==1.15.0",), "1.41.0")
    assert kept == ["flwr==1.41.0"]
    assert "asks for flwr==1.15.0; FLOps runs Flower 1.41.0" in notes[0]


def test_app_config_overrides_only_declared_keys_of_their_type() -> None:
    app = FlowerApp("a:app", "b:app", {"num-server-rounds": 3, "penalty": "l2"})
    assert merged_config(app, {"num-server-rounds": 5}) == {
        "num-server-rounds": 5,
        "penalty": "l2",
    }
    with pytest.raises(ContractError, match="it declares: num-server-rounds, penalty"):
        merged_config(app, {"lr": 0.1})
    with pytest.raises(ContractError, match="declares it as str"):
        merged_config(app, {"penalty": 2})


def test_the_generated_app_wraps_the_apps_own_components(tmp_path: Path) -> None:
    app = FlowerApp("pkg.server_app:app", "pkg.client_app:app", {"epochs": 1}, None)
    augment.write_app(tmp_path, "p", {"flops-config": "{}"}, app, {"epochs": 2})
    server = (tmp_path / "flops_app" / "server_app.py").read_text()
    client = (tmp_path / "flops_app" / "client_app.py").read_text()
    assert "observed_server_app('pkg.server_app:app', model_export=None)" in server
    assert "observed_client_app('pkg.client_app:app')" in client
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert "epochs = 2" in pyproject and 'flops-config = "{}"' in pyproject

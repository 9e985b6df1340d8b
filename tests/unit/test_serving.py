"""Inference servers on the local orchestrator: real `flops.serve` processes over a
real MLflow model, recorded in a real SQLite store; their command lines and
containers by equality."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from flops.errors import ConfigError, ConflictError, FlopsError
from flops_management import serving
from flops_management.models import InferenceServer, Project, ServerStatus
from flops_management.orchestrators import BUILTIN_ORCHESTRATORS, check_orchestrator
from flops_management.orchestrators.base import (
    Deployment,
    DeploymentSpec,
    Orchestrator,
)
from flops_management.orchestrators.docker_containers import server_container_spec
from flops_management.orchestrators.local_commands import server_args
from flops_management.settings import Settings
from flops_management.store import Store, open_store

ENVIRONMENT = Path(sys.executable).parent.parent  # this venv holds mlflow, uvicorn


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # This test's environment is the test run's own venv, whose editable `flops`
    # lives in the source tree, outside any sandbox: serving in the sandbox runs
    # in the end-to-end tests, from a project's real environment.
    return Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri="http://127.0.0.1:9",
        dev_unsandboxed_tenant_code=True,
    )


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings.store)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    import mlflow.sklearn
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    model = LogisticRegression(max_iter=200).fit(digits.data, digits.target)
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(model, path)
    return path, model


def _project(store: Store, project_id: str = "p1", tenant: str = "local") -> Project:
    project = Project(
        id=project_id, tenant=tenant, name="mnist", source="/x", requested_config={}
    )
    store.create_project(project)
    return project


def _deploy(
    settings: Settings, store: Store, project: Project, model: Path
) -> InferenceServer:
    lines: list[str] = []
    return serving.deploy(
        settings,
        store,
        project,
        "local",
        model_uri="models:/local.mnist/1",
        model_dir=model,
        workdir=settings.home / "jobs" / project.id,
        environment=ENVIRONMENT,
        image=None,
        port=None,
        log=lines.append,
    )


def test_server_command_and_container_by_equality() -> None:
    assert server_args(Path("/env/bin/python"), Path("/m"), "127.0.0.1", 9000) == [
        "/env/bin/python", "-m", "flops.serve", "--model", "/m",
        "--host", "127.0.0.1", "--port", "9000",
    ]  # fmt: skip
    on_host = server_container_spec("0123456789abcdef", "host", "127.0.0.1", 9000)
    assert on_host.name == "flops-0123456789ab-inference"
    assert on_host.command == ["--host", "127.0.0.1", "--port", "9000"]
    assert on_host.ports == {}
    bridged = server_container_spec("0123456789abcdef", "flops", "0.0.0.0", 9000)
    assert bridged.command == []
    assert bridged.ports == {"8080/tcp": ("0.0.0.0", 9000)}


def test_a_wildcard_address_is_named_by_the_host_in_the_url() -> None:
    assert serving.server_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert "0.0.0.0" not in serving.server_url("0.0.0.0", 8080)


def test_deploy_serves_the_model_and_undeploy_stops_it(
    settings: Settings, store: Store, model_dir: tuple[Path, Any]
) -> None:
    path, model = model_dir
    project = _project(store)
    server = _deploy(settings, store, project, path)
    try:
        features = np.arange(64 * 5, dtype="float64").reshape(5, 64) % 16
        response = httpx.post(
            f"{server.url}/invocations", json={"inputs": features.tolist()}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == model.predict(features).tolist()
        recorded = store.get_project(project.id).server
        assert recorded is not None and recorded.status == ServerStatus.RUNNING
        assert recorded.url == server.url
    finally:
        stopped = serving.undeploy(settings, store, "local", project.id)
    assert stopped.server is not None
    assert stopped.server.status == ServerStatus.STOPPED
    assert stopped.server.reason == "stopped by the user"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/ping", timeout=2)
    with pytest.raises(ConflictError, match="no running inference server"):
        serving.undeploy(settings, store, "local", project.id)
    assert store.list_events(project.id)[-1].type == "inference_server_stopped"


def test_a_server_that_cannot_load_its_model_fails_with_its_output(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    project = _project(store)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(FlopsError, match="did not come up") as failed:
        _deploy(settings, store, project, empty)
    assert "MLmodel" in str(failed.value)  # the server's own last lines
    server = store.get_project(project.id).server
    assert server is not None and server.status == ServerStatus.STOPPED
    assert server.reason is not None and server.reason.startswith("did not start")


def test_undeploy_is_per_tenant(settings: Settings, store: Store) -> None:
    from flops.errors import NotFoundError

    _project(store, "theirs", tenant="other")
    with pytest.raises(NotFoundError):
        serving.undeploy(settings, store, "local", "theirs")


def _recorded(store: Store, project_id: str, pid: int) -> None:
    store.update_project(
        project_id,
        server=InferenceServer(
            url="http://127.0.0.1:1",
            orchestrator="local",
            model_uri="models:/x/1",
            handle={"pid": pid, "log": "/nonexistent"},
        ),
    )


def test_the_service_stops_local_servers_with_it_and_reconciles_dead_ones(
    settings: Settings, store: Store
) -> None:
    # A stand-in process whose command line carries the local backend's marker.
    alive = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "flops.serve"],
        start_new_session=True,
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass", "flops.serve"])
    dead.wait()
    _project(store, "alive")
    _project(store, "dead")
    _recorded(store, "alive", alive.pid)
    _recorded(store, "dead", dead.pid)

    serving.reconcile(settings, store)
    found_dead = store.get_project("dead").server
    assert found_dead is not None and found_dead.status == ServerStatus.STOPPED
    assert found_dead.reason == "found exited"
    assert [p.id for p in store.running_servers()] == ["alive"]

    serving.stop_with_service(settings, store, "the service stopped")
    assert alive.wait(timeout=10) is not None
    stopped = store.get_project("alive").server
    assert stopped is not None and stopped.reason == "the service stopped"
    assert store.running_servers() == []


class NoServers(Orchestrator):
    """A backend without inference servers (as third-party ones may be)."""

    name: ClassVar[str] = "noservers"

    def submit(self, spec: DeploymentSpec) -> Deployment:
        raise NotImplementedError

    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        raise NotImplementedError


def test_deploying_on_a_backend_without_servers_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        BUILTIN_ORCHESTRATORS, "noservers", f"{__name__}:{NoServers.__name__}"
    )
    check_orchestrator("noservers")
    with pytest.raises(ConfigError, match="these can: local, docker"):
        check_orchestrator("noservers", serving=True)
    check_orchestrator("docker", serving=True)


def test_a_server_that_never_answers_times_out(settings: Settings) -> None:
    from flops_management.orchestrators.local import LocalOrchestrator

    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "flops.serve"],
        start_new_session=True,
    )
    try:
        with pytest.raises(FlopsError, match="no answer in 1s"):
            serving.wait_ready(
                LocalOrchestrator(settings),
                {"pid": sleeper.pid},
                "http://127.0.0.1:9/ping",
                timeout=1,
            )
    finally:
        sleeper.kill()
        sleeper.wait()

"""The inference-server image: built from the registered model after training,
pushed, tagged on the model version, and serving `/invocations` under Podman
with the same predictions as `mlflow.pyfunc` loading the model here; the model
deployed on the local orchestrator, and `flops project undeploy`."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack, free_port

pytestmark = pytest.mark.integration

SANDBOX = [
    "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
]  # fmt: skip


@pytest.fixture(scope="module")
def served(
    stack: Stack, digits: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    repo = make_repo(
        tmp_path_factory.mktemp("inference") / "mnist-sklearn",
        EXAMPLES / "mnist-sklearn",
    )
    config = repo.parent / "serve.toml"
    config.write_text(
        "[post_training]\nbuild_inference_image = true\n"
        "deploy_inference_server = true\n"
    )
    result, project = stack.submit(
        str(repo), "--rounds", "2", "--learners", "2", "--data-tag", digits,
        "--config", str(config),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


def test_the_model_version_names_its_inference_image(
    served: dict[str, Any], mlflow_client: Any
) -> None:
    stages = {stage["name"]: stage["status"] for stage in served["stages"]}
    assert stages["inference_image"] == "succeeded"
    image = served["images"]["inference"]
    assert image["platforms"] == ["linux/amd64"]
    assert image["reference"].endswith(image["digest"])
    assert image["run"]["podman"].endswith(image["reference"])
    version = mlflow_client.get_model_version(
        served["mlflow"]["model_name"], served["mlflow"]["model_version"]
    )
    assert version.tags["flops.inference_image"] == image["reference"]


def _pyfunc_predictions(project: dict[str, Any], features: np.ndarray) -> list[Any]:
    import mlflow.pyfunc

    model = project["mlflow"]
    uri = f"models:/{model['model_name']}/{model['model_version']}"
    return list(np.asarray(mlflow.pyfunc.load_model(uri).predict(features)).tolist())


def test_the_image_serves_the_same_predictions_as_pyfunc(
    served: dict[str, Any], mlflow_client: Any
) -> None:
    image = served["images"]["inference"]
    port = free_port()
    name = f"flops-test-serve-{port}"
    # The pinned reference, pulled from the registry as a user would.
    started = subprocess.run(
        ["podman", "run", "-d", "--name", name, "--tls-verify=false", *SANDBOX,
         "-p", f"127.0.0.1:{port}:8080", image["reference"]],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            logs = subprocess.run(
                ["podman", "logs", name], capture_output=True, text=True
            )
            assert time.monotonic() < deadline, (
                logs.stdout[-2000:] + logs.stderr[-2000:]
            )
            time.sleep(0.5)
        digits = load_digits()
        features = digits.data[:50].astype("float32")
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"inputs": features.tolist()},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        remote = np.array(response.json()["predictions"])
        assert remote.tolist() == _pyfunc_predictions(served, features)
        assert (remote == digits.target[:50]).mean() > 0.8
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)


def test_the_deployed_server_answers_like_pyfunc(
    served: dict[str, Any], mlflow_client: Any
) -> None:
    server = served["server"]
    assert server["status"] == "running" and server["orchestrator"] == "local"
    features = load_digits().data[:20].astype("float32")
    response = httpx.post(
        f"{server['url']}/invocations", json={"inputs": features.tolist()}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == _pyfunc_predictions(served, features)


def test_show_names_the_images_their_run_lines_and_the_server(
    stack: Stack, served: dict[str, Any]
) -> None:
    shown = stack.flops("project", "show", served["id"])
    assert shown.returncode == 0, shown.stderr
    image = served["images"]["inference"]
    assert image["reference"] in shown.stdout
    assert image["run"]["podman"] in shown.stdout
    assert image["run"]["docker"] in shown.stdout
    assert f"server   {served['server']['url']} running" in shown.stdout


def test_undeploy_stops_the_server(stack: Stack, served: dict[str, Any]) -> None:
    url = served["server"]["url"]
    stopped = stack.flops("project", "undeploy", served["id"])
    assert stopped.returncode == 0, stopped.stderr
    assert f"inference server {url}" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/ping", timeout=2)
    server = stack.show(served["id"])["server"]
    assert server["status"] == "stopped" and server["reason"] == "stopped by the user"
    again = stack.flops("project", "undeploy", served["id"])
    assert again.returncode != 0
    assert "no running inference server" in again.stderr + again.stdout

"""The oakestra orchestrator end to end: `flops project submit --orchestrator
oakestra` through the service, against the STAND-IN root orchestrator
(tests/oakestra_standin.py; no Oakestra root orchestrator can run here) whose
stand-in worker runs each deployed instance as a real Podman container on a
bridge in Oakestra's overlay range (tests/oakestra_worker.py).

Everything else is real: the FL-actor image built with Buildah and pushed to
the registry, Flower over TLS with node authentication across the bridge (the
service dials each SuperLink at its round-robin address, as it would on
Oakestra's overlay), MLflow reached by the actors at the overlay's gateway.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flops_management import datasets
from flops_management.settings import Settings
from tests.conftest import remove_local_images
from tests.helpers import EXAMPLES, make_repo
from tests.oakestra_standin import OakestraStandin
from tests.oakestra_worker import GATEWAY, PodmanWorker, TcpForward
from tests.stack import Stack

pytestmark = pytest.mark.integration

CLUSTERS = {"edge-a": ["learner-0"], "edge-b": ["learner-1"]}
VOLUME = "flops-data"


@pytest.fixture(scope="module")
def oakestra(
    tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, Path, Path]
) -> Iterator[tuple[Stack, OakestraStandin, Path]]:
    """A service of its own whose oakestra orchestrator deploys through the
    stand-in; the CSI volume (a host folder) the learners read."""
    volume = tmp_path_factory.mktemp("csi") / VOLUME
    volume.mkdir(mode=0o755)
    standin = OakestraStandin(worker=PodmanWorker({VOLUME: volume})).start()
    home = tmp_path_factory.mktemp("flops-home-oakestra")
    stack = Stack.prepare(home, tls[2])
    forward = TcpForward((GATEWAY, stack.mlflow_port), ("127.0.0.1", stack.mlflow_port))
    stack.env.update(
        {
            "FLOPS_MLFLOW_ACTOR_URI": f"http://{GATEWAY}:{stack.mlflow_port}",
            "FLOPS_OAKESTRA_URL": standin.url,
            "FLOPS_OAKESTRA_USERNAME": standin.username,
            "FLOPS_OAKESTRA_PASSWORD": standin.password,
            "FLOPS_OAKESTRA_DATA_VOLUME": VOLUME,
            "FLOPS_OAKESTRA_CSI_DRIVER": "hostpath.standin.flops",
        }
    )
    up = stack.flops("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield stack, standin, volume
    finally:
        try:
            stack.flops("down", timeout=300)
        finally:
            standin.stop()
            forward.close()
            remove_local_images(stack.registry)


def stage_data(stack: Stack, file: Path, volume: Path) -> str:
    """What the operator does for a CSI volume: each learner's partition in a
    folder of its name (`<learner>/<tag>/`)."""
    pushed = stack.flops(
        "data", "push", str(file), "--tag", "digits", "--partitions", "2"
    )
    assert pushed.returncode == 0, pushed.stderr
    settings = Settings(home=stack.home)
    for index, learner in enumerate(["learner-0", "learner-1"]):
        folder = volume / learner / "digits"
        folder.mkdir(parents=True)
        source = datasets.learner_partition(settings, "local", "digits", index)
        shutil.copyfile(source, folder / source.name)
    subprocess.run(["chmod", "-R", "a+rX", str(volume)], check=True)
    return "digits"


def mlflow_get(stack: Stack, route: str, **params: Any) -> Any:
    """MLflow's REST API as the stack's admin (a client of its own: the
    session's MLflow client is set up for the session's stack)."""
    password = (stack.home / "mlflow" / "admin-password").read_text().strip()
    response = httpx.get(
        f"{stack.tracking_uri}/api/2.0/mlflow/{route}",
        params=params,
        auth=("admin", password),
    )
    response.raise_for_status()
    return response.json()


def test_a_hierarchical_job_trains_on_oakestra_and_leaves_nothing_behind(
    oakestra: tuple[Stack, OakestraStandin, Path],
    digits_file: Path,
    tmp_path: Path,
) -> None:
    stack, standin, volume = oakestra
    tag = stage_data(stack, digits_file, volume)
    repo = make_repo(tmp_path / "mnist", EXAMPLES / "mnist-sklearn")
    config = tmp_path / "flops.toml"
    config.write_text(
        f'mode = "hierarchical"\nrounds = 2\ndata_tags = ["{tag}"]\n'
        + "".join(
            f'[[clusters]]\nname = "{name}"\nlearners = {len(members)}\n'
            for name, members in CLUSTERS.items()
        )
    )
    result, project = stack.submit(
        str(repo), "--config", str(config), "--orchestrator", "oakestra"
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert project["status"] == "succeeded", project["error"]
    # Oakestra keeps an instance's last 1 KB of log: the live progress may
    # have missed rounds; the job's end and model came from Flower and MLflow.
    assert project["mlflow"]["model_version"]

    # Both tiers in MLflow: the root's run, a child per cluster.
    root = mlflow_get(stack, "runs/get", run_id=project["mlflow"]["run_id"])["run"]
    assert root["info"]["status"] == "FINISHED"
    history = mlflow_get(
        stack,
        "metrics/get-history",
        run_id=root["info"]["run_id"],
        metric_key="eval_accuracy",
    )["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2]
    assert max(history, key=lambda m: m["step"])["value"] > 0.5
    found = httpx.post(
        f"{stack.tracking_uri}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [root["info"]["experiment_id"]],
            "filter": f"tags.mlflow.parentRunId = '{root['info']['run_id']}'",
        },
        auth=("admin", (stack.home / "mlflow" / "admin-password").read_text().strip()),
    ).json()
    names = sorted(
        tag["value"]
        for run in found["runs"]
        for tag in run["data"]["tags"]
        if tag["key"] == "flops.cluster"
    )
    assert names == sorted(CLUSTERS)

    # What went to Oakestra: one application, five services (the stand-in
    # refuses an SLA its copy of Oakestra's schema refuses).
    created = [p for m, p in standin.requests if m == "POST"]
    assert created.count("/api/application/") == 1
    assert created.count("/api/service/") == 5
    # ... and all of it undeployed and deleted when the job ended.
    assert standin.apps == {} and standin.services == {}
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", "name=^oak-", "--format", "{{.Names}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert left.stdout.split() == []

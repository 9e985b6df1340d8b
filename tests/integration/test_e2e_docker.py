"""The `docker` orchestrator end to end: the FL-actor image built with Buildah and
pushed to the real registry, actors as Podman containers driven through the
Docker Engine API, and a second submit of the same commit that skips the build."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration

PODMAN_RUN = [
    "podman", "run", "--rm", "--runtime", "runc",
    "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
]  # fmt: skip
DOCKER = ("--rounds", "3", "--learners", "2", "--orchestrator", "docker")


@pytest.fixture(scope="module")
def mnist_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(
        tmp_path_factory.mktemp("repo") / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
    )


@pytest.fixture(scope="module")
def first_run(stack: Stack, digits: str, mnist_repo: Path) -> dict[str, Any]:
    result, project = stack.submit(str(mnist_repo), *DOCKER, "--data-tag", digits)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


def _containers(label: str) -> list[str]:
    """Names of the containers, running or stopped, that carry `label`."""
    listed = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return listed.stdout.split()


def _stages(project: dict[str, Any]) -> dict[str, str]:
    return {stage["name"]: stage["status"] for stage in project["stages"]}


def test_mnist_sklearn_trains_in_containers(
    stack: Stack, first_run: dict[str, Any]
) -> None:
    assert first_run["status"] == "succeeded"
    assert _stages(first_run)["build"] == "succeeded"
    assert first_run["progress"]["round"] == 3
    image = first_run["images"]["fl_actor"]
    assert image["platforms"] == ["linux/amd64"]
    assert image["reference"] == (
        f"{stack.registry}/flops/local/mnist-sklearn@{image['digest']}"
    )
    commit = first_run["commit"]
    assert image["tag"].startswith(
        f"{stack.registry}/flops/local/mnist-sklearn:{commit[:12]}-d"
    )
    # The registry serves exactly that image.
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
         f"docker://{image['tag']}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert inspected.stdout.strip() == image["digest"]
    events = stack.events(first_run["id"])
    kinds = {event["type"] for event in events}
    assert {"build_log", "image_ready", "actor_log"} <= kinds
    build_lines = [e["data"]["line"] for e in events if e["type"] == "build_log"]
    assert any("no emulation" in line for line in build_lines)
    assert any("STEP" in line and "COPY" in line for line in build_lines)
    components = {e["data"]["component"] for e in events if e["type"] == "actor_log"}
    assert {"aggregator", "learner-0", "learner-1"} <= components
    # Nothing of the job is left running or stopped.
    assert _containers(f"io.flops.job={first_run['id']}") == []


def test_the_image_holds_the_repo_and_its_dependencies(
    first_run: dict[str, Any],
) -> None:
    """Two package folders: Flower's side imports flwr; the user's side (the
    model worker's PYTHONPATH) imports the repo and its dependencies, not flwr."""
    local = first_run["images"]["fl_actor"]["tag"] + "-amd64"
    probe = subprocess.run(
        [*PODMAN_RUN, "--entrypoint", "sh", local, "-c",
         "python3 -c 'import flwr, flops.app.client' && "
         "PYTHONPATH=$FLOPS_WORKER_PATH python3 -c "
         "'import sklearn, flops_utils, model_manager, flops.worker.session' && "
         "! PYTHONPATH=$FLOPS_WORKER_PATH python3 -c 'import flwr' 2>/dev/null"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]


@pytest.fixture(scope="module")
def second_run(
    stack: Stack, digits: str, mnist_repo: Path, first_run: dict[str, Any]
) -> dict[str, Any]:
    """The same commit again, this time deploying its model."""
    config = mnist_repo.parent / "deploy.toml"
    config.write_text("[post_training]\ndeploy_inference_server = true\n")
    result, again = stack.submit(
        str(mnist_repo), *DOCKER, "--data-tag", digits, "--config", str(config)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return again


def test_second_submit_of_the_same_commit_skips_the_build(
    stack: Stack, first_run: dict[str, Any], second_run: dict[str, Any]
) -> None:
    again = second_run
    assert again["status"] == "succeeded"
    assert _stages(again)["build"] == "skipped"
    assert (
        again["images"]["fl_actor"]["digest"]
        == first_run["images"]["fl_actor"]["digest"]
    )
    skipped = [e for e in stack.events(again["id"]) if e["type"] == "image_ready"]
    assert skipped and skipped[0]["data"]["skipped"] is True


def test_a_dependency_that_does_not_exist_fails_the_build(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "r",
        EXAMPLES / "mnist-sklearn",
        {"requirements.txt": "scikit-learn\nflops-no-such-package==1.0\n"},
    )
    result, project = stack.submit(str(repo), *DOCKER, "--data-tag", digits)
    assert result.returncode == 1
    assert project["status"] == "failed"
    # Named with the platform, as the one problem it is.
    assert (
        "cannot be installed on Python 3.11 (linux/amd64): 1 problem"
        in (project["error"])
    )
    assert "flops-no-such-package==1.0: does not install" in project["error"]
    assert _stages(project)["build"] == "failed"


def test_the_model_is_served_from_its_inference_image_until_undeployed(
    stack: Stack, second_run: dict[str, Any]
) -> None:
    import httpx
    import numpy as np
    from sklearn.datasets import load_digits

    server = second_run["server"]
    image = second_run["images"]["inference"]
    assert server["orchestrator"] == "docker" and server["image"] == image["reference"]
    # The job's teardown removed its actors but left the server running.
    assert _containers(f"io.flops.inference-server={second_run['id']}") == [
        f"flops-{second_run['id'][:12]}-inference"
    ]
    digits = load_digits()
    response = httpx.post(
        f"{server['url']}/invocations",
        json={"inputs": digits.data[:50].astype("float32").tolist()},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    assert (predictions == digits.target[:50]).mean() > 0.8
    stopped = stack.flops("project", "undeploy", second_run["id"])
    assert stopped.returncode == 0, stopped.stderr
    assert _containers(f"io.flops.inference-server={second_run['id']}") == []


def test_the_docker_backend_keeps_the_orchestrator_contract(
    stack: Stack, first_run: dict[str, Any], tmp_path: Path, mnist_repo: Path
) -> None:
    """The suite every backend runs (tests/orchestrator_contract.py), on the
    image the first run built, with the stack's settings (engine, network)."""
    import os
    from unittest import mock

    from flops_management.orchestrators import (
        DeploymentSpec,
        LearnerSpec,
        get_orchestrator,
    )
    from flops_management.settings import Settings
    from tests.orchestrator_contract import check_contract

    with mock.patch.dict(os.environ, stack.env):
        # Joined learners are accepted once the Fleet host is known.
        settings = Settings(fleet_host=stack.env.get("FLOPS_FLEET_HOST", "127.0.0.1"))
    spec = DeploymentSpec(
        job_id="contract0docker0",
        workdir=tmp_path / "job",
        repo_dir=mnist_repo,
        learners=(LearnerSpec("learner-0", None), LearnerSpec("learner-1", None)),
        # What the pipeline hands the backend: the tag (its platform build is
        # tagged `<tag>-<arch>` in the engine's storage).
        image=first_run["images"]["fl_actor"]["tag"],
    )
    check_contract(get_orchestrator("docker", settings), spec)
    assert _containers("io.flops.job=contract0docker0") == []


def test_a_device_runs_its_learner_from_the_fl_actor_image(
    stack: Stack,
    digits: str,
    digits_file: Path,
    mnist_repo: Path,
    first_run: dict[str, Any],
    tmp_path: Path,
) -> None:
    """A learner that joins from its owner's machine (a network namespace)
    runs the project's FL-actor image with its own Podman, beside one the
    docker backend placed: the same commit, so the image is the first run's."""
    import pyarrow.parquet as pq

    from tests import netns
    from tests.integration.test_joined_learners import TOKEN, device, kill_tree

    if (reason := netns.available()) is not None:
        pytest.fail(f"this test needs network namespaces: {reason}")
    # The device has the image already, under a name of its own, as one with
    # no registry in reach would have loaded it (the registry is on the
    # service's loopback here).
    image = first_run["images"]["fl_actor"]["reference"]
    pulled = subprocess.run(
        ["podman", "pull", "-q", "--tls-verify=false", image],
        capture_output=True,
        text=True,
    )
    assert pulled.returncode == 0, pulled.stderr
    local = "localhost/edge/fl-actor:loaded"
    subprocess.run(["podman", "tag", pulled.stdout.strip(), local], check=True)
    submitted = stack.flops(
        "project", "submit", str(mnist_repo), "--rounds", "2", "--learners", "2",
        "--joined-learners", "1", "--orchestrator", "docker", "--data-tag", digits,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    project_id = submitted.stdout.strip()
    (token,) = TOKEN.findall(stack.flops("project", "enrol", project_id).stdout)
    own = tmp_path / "own.parquet"
    table = pq.read_table(digits_file)
    pq.write_table(table.slice(table.num_rows // 2), own)
    # This machine's Podman needs runc and explicit limits (its sandbox): what
    # a device's own containers.conf says, not FLOps'.
    conf = tmp_path / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    with netns.netns("flops-img") as machine:
        learner = device(
            stack, machine, tmp_path / "edge", project_id, token,
            "--name", "edge-1", "--data", f"digits={own}", "--runner", "image",
            "--image", local, env={"CONTAINERS_CONF": str(conf)},
            network_only=True,  # its Podman needs the host's cgroups
        )  # fmt: skip
        try:
            final = stack.wait_for(
                project_id, lambda p: p["status"] not in ("queued", "running"), 900
            )
            out, _ = learner.communicate(timeout=120)
        finally:
            if learner.poll() is None:
                kill_tree(learner)
    assert final["status"] == "succeeded", f"{final.get('error')}\n{out}"
    assert learner.returncode == 0, out
    assert "learner edge-1 running (image)" in out and "round 1: train" in out
    registered = [
        e["data"] for e in stack.events(project_id) if e["type"] == "learner_registered"
    ]
    assert [(r["learner"], r["address"]) for r in registered] == [
        ("edge-1", machine.address)
    ]
    assert _containers("io.flops.job=" + project_id) == []
    subprocess.run(["podman", "rmi", local], check=False, capture_output=True)


def test_hierarchical_clusters_run_as_containers(
    stack: Stack,
    digits: str,
    mnist_repo: Path,
    first_run: dict[str, Any],
    mlflow_client: Any,
) -> None:
    """Two clusters of one learner each: a container per cluster (its SuperLink,
    aggregator and uplink to the root), its learner dialling it by name; the
    image is the one already built for this commit."""
    config = mnist_repo.parent / "clusters.toml"
    config.write_text(
        'mode = "hierarchical"\nrounds = 2\norchestrator = "docker"\n'
        '[[clusters]]\nname = "edge-a"\nlearners = 1\n'
        '[[clusters]]\nname = "edge-b"\nlearners = 1\n'
    )
    result, project = stack.submit(
        str(mnist_repo), "--data-tag", digits, "--config", str(config)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert project["status"] == "succeeded", project["error"]
    assert _stages(project)["build"] == "skipped"
    events = stack.events(project["id"])
    components = {e["data"]["component"] for e in events if e["type"] == "actor_log"}
    assert {"aggregator", "edge-a-aggregator", "edge-b-aggregator"} <= components
    finished = {e["data"]["cluster"] for e in events if e["type"] == "cluster_finished"}
    assert finished == {"edge-a", "edge-b"}
    run_id = project["mlflow"]["run_id"]
    run = mlflow_client.get_run(run_id)
    clusters = mlflow_client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert sorted(c.data.tags["flops.cluster"] for c in clusters) == [
        "edge-a",
        "edge-b",
    ]
    for cluster in clusters:
        history = mlflow_client.get_metric_history(cluster.info.run_id, "eval_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
    assert not _containers(f"io.flops.job={project['id']}")

"""The `docker` orchestrator end to end: the FL-actor image built with Buildah and
pushed to the real registry, actors as Podman containers driven through the
Docker Engine API, and a second submit of the same commit that skips the build."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.integration.conftest import Stack

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
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label=io.flops.job={first_run['id']}",
         "--format", "{{.Names}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert left.stdout.strip() == ""


def test_the_image_holds_the_repo_and_its_dependencies(
    first_run: dict[str, Any],
) -> None:
    local = first_run["images"]["fl_actor"]["tag"] + "-amd64"
    probe = subprocess.run(
        [*PODMAN_RUN, "--entrypoint", "python3", local, "-c",
         "import sklearn, flwr, flops_utils, model_manager"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]


def test_second_submit_of_the_same_commit_skips_the_build(
    stack: Stack, digits: str, mnist_repo: Path, first_run: dict[str, Any]
) -> None:
    result, again = stack.submit(str(mnist_repo), *DOCKER, "--data-tag", digits)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
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
    assert "do not resolve for linux/amd64" in project["error"]
    assert "flops-no-such-package" in project["error"]
    assert _stages(project)["build"] == "failed"

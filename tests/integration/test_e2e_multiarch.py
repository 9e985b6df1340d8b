"""Multi-arch: one submission builds amd64 and arm64 images into one manifest
list (arm64 packages installed on this host for arm64, no emulation), trains on
this host's platform, and the arm64 image runs under QEMU with the repo's
dependencies."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration

PLATFORMS = ["linux/amd64", "linux/arm64"]


@pytest.fixture(scope="module")
def multiarch(
    stack: Stack, digits: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    repo = make_repo(
        tmp_path_factory.mktemp("multiarch") / "mnist-sklearn",
        EXAMPLES / "mnist-sklearn",
    )
    config = repo.parent / "multiarch.toml"
    config.write_text(f"platforms = {PLATFORMS!r}\n".replace("'", '"'))
    result, project = stack.submit(
        str(repo), "--rounds", "2", "--learners", "2", "--data-tag", digits,
        "--orchestrator", "docker", "--config", str(config), timeout=2400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


def test_one_manifest_list_holds_both_platforms(
    stack: Stack, multiarch: dict[str, Any]
) -> None:
    assert multiarch["status"] == "succeeded"
    image = multiarch["images"]["fl_actor"]
    assert sorted(image["platforms"]) == PLATFORMS
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{image['tag']}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert '"architecture":"arm64"' in raw and '"architecture":"amd64"' in raw
    lines = [e["data"]["line"] for e in stack.events(multiarch["id"])
             if e["type"] == "build_log"]  # fmt: skip
    for platform in PLATFORMS:
        assert any(
            line.startswith(f"{platform}: ") and "no emulation" in line
            for line in lines
        ), f"no build path reported for {platform}"


def test_the_arm64_image_runs_under_qemu_with_the_repo(
    multiarch: dict[str, Any],
) -> None:
    local = multiarch["images"]["fl_actor"]["tag"] + "-arm64"
    probe = subprocess.run(
        ["podman", "run", "--rm", "--platform", "linux/arm64", "--runtime", "runc",
         "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
         "--entrypoint", "sh", local, "-c",
         # Flower's side, then the model worker's (the user's package folder).
         "python3 -c 'import flwr, flops.app.client' && "
         "PYTHONPATH=$FLOPS_WORKER_PATH python3 -c "
         "'import platform, sklearn, datasets, flops_utils, model_manager; "
         "print(platform.machine())'"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().splitlines()[-1] == "aarch64"

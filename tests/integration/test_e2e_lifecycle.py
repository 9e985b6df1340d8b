"""Idempotent `flops up`, environment reuse, cancel, and a service restart mid-job."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration


def actor_pids(job_dir: Path) -> list[int]:
    """Processes whose command line mentions the job's folder (its actors)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(job_dir).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def start_long_job(stack: Stack, digits: str, tmp_path: Path) -> tuple[str, Path]:
    """Submit a 50-round job without following it; return once it trains."""
    repo = make_repo(tmp_path / "r", EXAMPLES / "mnist-sklearn")
    result = stack.flops(
        "project", "submit", str(repo), "--rounds", "50", "--data-tag", digits
    )
    assert result.returncode == 0, result.stderr
    project_id = result.stdout.strip()
    stack.wait_for(project_id, lambda p: p["progress"]["round"] >= 1)
    job_dir = stack.home / "jobs" / project_id
    assert actor_pids(job_dir), "actors should be running mid-training"
    return project_id, job_dir


def test_up_is_idempotent(stack: Stack) -> None:
    before = (stack.home / "run" / "api.pid").read_text()
    again = stack.flops("up")
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert (stack.home / "run" / "api.pid").read_text() == before


def test_same_dependencies_reuse_the_environment(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    paths = []
    for name in ("first", "second"):
        repo = make_repo(tmp_path / name, EXAMPLES / "mnist-sklearn")
        result, project = stack.submit(str(repo), "--rounds", "1", "--data-tag", digits)
        assert result.returncode == 0, project.get("error")
        ready = next(
            e for e in stack.events(project["id"]) if e["type"] == "environment_ready"
        )
        paths.append((ready["data"]["path"], ready["data"]["reused"]))
    assert paths[0][0] == paths[1][0]
    assert paths[1][1] is True


def test_cancel_stops_the_job_and_its_processes(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    project_id, job_dir = start_long_job(stack, digits, tmp_path)
    result = stack.flops("project", "cancel", project_id)
    assert result.returncode == 0, result.stderr
    project = stack.wait_for(project_id, lambda p: p["status"] != "running", timeout=60)
    assert project["status"] == "cancelled"
    assert (
        next(s for s in project["stages"] if s["name"] == "train")["status"]
        == "cancelled"
    )
    assert actor_pids(job_dir) == []
    shown = stack.flops("project", "show", project_id, "--follow")
    assert shown.returncode == 3  # cancelled


def test_restart_mid_job_marks_it_failed_and_keeps_everything_else(
    stack: Stack, digits: str, tmp_path: Path, mlflow_client: object
) -> None:
    before = {
        p["id"]: p["status"]
        for p in json.loads(stack.flops("project", "list", "--format", "json").stdout)
    }
    project_id, job_dir = start_long_job(stack, digits, tmp_path)
    api_pid = int((stack.home / "run" / "api.pid").read_text())
    os.kill(api_pid, signal.SIGKILL)  # the service dies without any cleanup
    time.sleep(1)
    assert actor_pids(job_dir), "the actors outlive the killed service"
    up = stack.flops("up")
    assert up.returncode == 0, up.stderr
    project = stack.show(project_id)
    assert project["status"] == "failed"
    assert "restarted while this job was running" in project["error"]
    assert actor_pids(job_dir) == []
    run = mlflow_client.get_run(project["mlflow"]["run_id"])  # type: ignore[attr-defined]
    assert run.info.status == "FAILED"
    after = {
        p["id"]: p["status"]
        for p in json.loads(stack.flops("project", "list", "--format", "json").stdout)
    }
    for known, status in before.items():
        assert after[known] == status


def test_down_mid_job_stops_it_and_says_why(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    project_id, job_dir = start_long_job(stack, digits, tmp_path)
    down = stack.flops("down")
    assert down.returncode == 0, down.stderr
    assert actor_pids(job_dir) == []
    up = stack.flops("up")
    assert up.returncode == 0, up.stderr
    project = stack.show(project_id)
    assert project["status"] == "failed"
    assert "stopped while this job was running" in project["error"]
    # The stage that ran says the same as the project.
    train = next(s for s in project["stages"] if s["name"] == "train")
    assert train["status"] == "failed"

"""Dropouts tolerated as configured: a learner whose SuperNode, executor or task
process dies is reported by name and the run goes on with the others while
min_fit/min_evaluate allow; below that the job fails naming who is gone."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration


def _processes() -> list[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        found.append((int(entry.name), ppid, argv))
    return found


def _sandboxed(argv: list[str]) -> bool:
    """The process itself, not bubblewrap or setpriv around it."""
    return not argv[0].endswith(("bwrap", "setpriv"))


def supernode_of(learner: str) -> tuple[int, str]:
    """(pid, runtime port) of a learner's running flower-supernode."""
    for pid, _, argv in _processes():
        joined = " ".join(argv)
        if (
            _sandboxed(argv)
            and "flower-supernode" in joined
            and f'flops-learner="{learner}"' in joined
        ):
            return pid, argv[argv.index("--port") + 1]
    raise AssertionError(f"no SuperNode of {learner}")


def executor_of(learner: str) -> int:
    """The learner's flops-executor (not one of the task processes it forks)."""
    _, port = supernode_of(learner)
    processes = _processes()
    argv_of = {pid: argv for pid, _, argv in processes}
    for pid, ppid, argv in processes:
        if (
            _sandboxed(argv)
            and "flops.executor" in argv
            and f"127.0.0.1:{port}" in argv
            and argv_of.get(ppid) != argv
        ):
            return pid
    raise AssertionError(f"no executor of {learner}")


def submit_and_wait_for_round(
    stack: Stack, tmp_path: Path, digits: str, *flags: str, rounds: int = 3
) -> str:
    repo = make_repo(tmp_path / "r", EXAMPLES / "mnist-sklearn")
    result = stack.flops(
        "project", "submit", str(repo), "--rounds", str(rounds),
        "--data-tag", digits, *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    project_id = result.stdout.strip()
    stack.wait_for(project_id, lambda p: p["progress"]["round"] >= 2, timeout=400)
    return project_id


@contextlib.contextmanager
def cancelled_after(stack: Stack, project_id: str) -> Iterator[None]:
    """Whatever the test finds, its job goes: a long job left running would
    hold the queue, and the next tests' jobs would time out behind it."""
    try:
        yield
    finally:
        stack.flops("project", "cancel", project_id)


def finished(stack: Stack, project_id: str) -> dict[str, Any]:
    return stack.wait_for(
        project_id, lambda p: p["status"] not in ("queued", "running"), timeout=600
    )


def lost_events(stack: Stack, project_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in stack.events(project_id) if e["type"] == "learner_lost"]


@pytest.fixture
def tolerant(tmp_path: Path) -> str:
    config = tmp_path / "flops.toml"
    config.write_text("min_fit = 1\nmin_evaluate = 1\n")
    return str(config)


@pytest.mark.parametrize("what", ["supernode", "executor"])
def test_a_learner_that_dies_is_named_and_the_run_goes_on(
    stack: Stack,
    digits: str,
    tmp_path: Path,
    tolerant: str,
    mlflow_client: Any,
    what: str,
) -> None:
    project_id = submit_and_wait_for_round(
        stack, tmp_path, digits, "--config", tolerant
    )
    victim = (
        supernode_of("learner-1")[0]
        if what == "supernode"
        else executor_of("learner-1")
    )
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    project = finished(stack, project_id)
    assert project["status"] == "succeeded", project["error"]
    assert project["progress"]["round"] == 3
    lost = lost_events(stack, project_id)
    assert [e["learner"] for e in lost] == ["learner-1"]
    assert "learner-1" in project["progress"]["learners_lost"]
    shown = stack.flops("project", "show", project_id[:8])
    assert "lost     learner-1" in shown.stdout
    history = mlflow_client.get_metric_history(
        project["mlflow"]["run_id"], "learners_failed"
    )
    assert max(m.value for m in history) >= 1
    assert time.monotonic() - killed_at < 300


def test_a_killed_task_process_is_reported_by_learner_name(
    stack: Stack, digits: str, tmp_path: Path, tolerant: str
) -> None:
    project_id = submit_and_wait_for_round(
        stack, tmp_path, digits, "--config", tolerant, rounds=30
    )
    with cancelled_after(stack, project_id):
        _kill_a_task(stack, project_id)
    assert finished(stack, project_id)["status"] == "cancelled"


def _kill_a_task(stack: Stack, project_id: str) -> None:
    executor = executor_of("learner-1")
    deadline = time.monotonic() + 120
    child = None
    while child is None and time.monotonic() < deadline:
        # A forked task, not the model worker the executor keeps beside it.
        child = next(
            (
                p
                for p, ppid, argv in _processes()
                if ppid == executor and "flops.worker" not in argv
            ),
            None,
        )
        time.sleep(0.01)
    assert child is not None, "the learner's executor never forked a task"
    os.kill(child, signal.SIGKILL)
    stack.wait_for(
        project_id,
        lambda _: any(
            e["type"] == "learner_task_failed" for e in stack.events(project_id)
        ),
        timeout=60,
    )
    task = next(
        e["data"]
        for e in stack.events(project_id)
        if e["type"] == "learner_task_failed"
    )
    assert task["learner"] == "learner-1" and task["code"] == -9


def test_a_dead_model_worker_takes_its_learner_out_by_name(
    stack: Stack, digits: str, tmp_path: Path, tolerant: str
) -> None:
    """The model worker (the user's code, its own environment) killed: its
    executor stops at once, so the learner is named as lost, not waited for."""
    project_id = submit_and_wait_for_round(
        stack, tmp_path, digits, "--config", tolerant, rounds=30
    )
    with cancelled_after(stack, project_id):
        executor = executor_of("learner-1")
        worker = next(
            p
            for p, ppid, argv in _processes()
            if ppid == executor and "flops.worker" in argv
        )
        os.kill(worker, signal.SIGKILL)
        stack.wait_for(
            project_id,
            lambda _: any(
                e["type"] == "learner_lost" and e["data"].get("learner") == "learner-1"
                for e in stack.events(project_id)
            ),
            timeout=60,
        )
    assert finished(stack, project_id)["status"] == "cancelled"


def test_below_the_minimum_the_job_fails_naming_who_is_gone(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    project_id = submit_and_wait_for_round(stack, tmp_path, digits, rounds=30)
    with cancelled_after(stack, project_id):
        killed_at = time.monotonic()
        os.kill(supernode_of("learner-0")[0], signal.SIGKILL)
        project = finished(stack, project_id)
    assert time.monotonic() - killed_at < 30
    assert project["status"] == "failed"
    assert "1 of 2 learners are gone, 1 left, 2 needed" in project["error"]
    assert re.search(r"learner-0 \(learner-0-supernode exited", project["error"])
    assert list(project["progress"]["learners_lost"]) == ["learner-0"]


def test_a_dead_superlink_fails_the_job_with_the_reason_and_keeps_its_state(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    """The SuperLink dies mid-run: the job does not hang; it fails at once
    saying which component stopped, and the SuperLink's state (its database
    file in the job folder: the run, its registered nodes) is still there."""
    project_id = submit_and_wait_for_round(stack, tmp_path, digits)
    state = stack.home / "jobs" / project_id / "flwr" / "superlink" / "state.db"
    victims = [
        pid
        for pid, _, argv in _processes()
        if _sandboxed(argv)
        and "flower-superlink" in " ".join(argv)
        and str(state) in argv
    ]
    assert len(victims) == 1, "the job's SuperLink runs on its state file"
    killed_at = time.monotonic()
    os.kill(victims[0], signal.SIGKILL)
    project = finished(stack, project_id)
    assert time.monotonic() - killed_at < 60
    assert project["status"] == "failed"
    assert project["error"].startswith("superlink stopped unexpectedly (exited")
    assert state.stat().st_size > 0

"""A restarted service settles what its previous life left running."""

import subprocess
import sys
import time
from pathlib import Path

from flops_management.models import Project, ProjectStatus, StageStatus
from flops_management.pipeline.runner import RESTART_REASON, JobRunner
from flops_management.settings import Settings
from flops_management.store import open_store


def test_running_jobs_fail_with_the_reason_and_their_processes_stop(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, mlflow_tracking_uri="http://127.0.0.1:9")
    store = open_store(settings.store)
    # A leftover actor: its command line carries the marker the local backend checks.
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "flops.executor"],
        start_new_session=True,
    )
    running = Project(
        id="r1", tenant="local", name="a", source="/x", requested_config={}
    )
    running.status = ProjectStatus.RUNNING
    running.stage("train").status = StageStatus.RUNNING
    running.runtime = {"orchestrator": "local", "pids": {"learner-0": leftover.pid}}
    queued = Project(
        id="q1",
        tenant="local",
        name="b",
        source=str(tmp_path / "gone"),
        requested_config={},
    )
    done = Project(id="d1", tenant="local", name="c", source="/x", requested_config={})
    done.status = ProjectStatus.SUCCEEDED
    for project in (running, queued, done):
        store.create_project(project)

    runner = JobRunner(settings, store)
    runner.recover()

    assert leftover.wait(timeout=10) is not None
    got = store.get_project("r1")
    assert got.status == ProjectStatus.FAILED and got.error == RESTART_REASON
    assert got.stage("train").status == StageStatus.FAILED
    assert store.list_events("r1")[-1].type == "job_failed"
    for _ in range(100):  # the queued one was started again (and fails: no repo)
        if store.get_project("q1").status == ProjectStatus.FAILED:
            break
        time.sleep(0.05)
    assert "does not exist" in str(store.get_project("q1").error)
    assert store.get_project("d1").status == ProjectStatus.SUCCEEDED
    runner.shutdown()


def test_cleanup_never_kills_a_reused_pid(tmp_path: Path) -> None:
    from flops_management.orchestrators.local import LocalOrchestrator

    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    LocalOrchestrator(Settings(home=tmp_path)).cleanup({"pids": {"x": stranger.pid}})
    time.sleep(0.2)
    assert stranger.poll() is None
    stranger.kill()
    stranger.wait()

"""The model worker: its wire format, and a real worker process running a repo's
ModelManager (forked per task), with the failures a user's code can cause."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flops.usercode import UserCodeError
from flops.worker import protocol
from flops.worker.client import Worker, WorkerSession, worker_args, worker_env

MODEL_MANAGER = """
import os
import numpy as np

class ModelManager:
    def __init__(self):
        self.w = np.zeros((2, 3), dtype=np.float32)
        self.b = np.zeros(3, dtype=np.int64)

    def set_model_data(self):
        self.rows = len(os.listdir(os.environ.get("DATA", "."))) or 1

    def get_model(self):
        return None

    def get_model_parameters(self):
        return [self.w, self.b]

    def set_model_parameters(self, parameters):
        self.w, self.b = parameters

    def fit_model(self):
        if self.w[0, 0] < 0:
            raise ValueError("negative weights")
        if self.w[0, 0] > 100:
            os._exit(3)
        self.w = self.w + 1
        return 10

    def evaluate_model(self):
        return np.float32(0.5), 0.75, 4
"""


def test_arrays_and_headers_survive_the_wire_exactly() -> None:
    left, right = socket.socketpair()
    arrays = [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1, 2, 3], dtype=np.int64),
        np.zeros((0, 4)),
        np.array(7.5),
    ]
    with left, right:
        protocol.send(left, {"op": "x", "args": {"n": 1}}, arrays)
        message = protocol.receive(right)
        assert message is not None
        payload, received = message
        assert payload == {"op": "x", "args": {"n": 1}}
        for sent, got in zip(arrays, received, strict=True):
            assert got.dtype == sent.dtype and np.array_equal(got, sent)
        left.close()
        assert protocol.receive(right) is None  # a clean hang-up


def test_a_message_cut_short_is_a_protocol_error() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(protocol.encode({"op": "x"}, [np.ones(100)])[:-10])
        left.close()
        with pytest.raises(protocol.ProtocolError, match="closed"):
            protocol.receive(right)


def test_the_worker_runs_on_the_given_interpreter_without_the_runtimes_path() -> None:
    assert worker_args("/env/bin/python", Path("/s"), Path("/r"), "learner") == [
        "/env/bin/python", "-m", "flops.worker", "serve",
        "--socket", "/s", "--repo", "/r", "--role", "learner",
    ]  # fmt: skip
    env = worker_env({"PYTHONPATH": "/site", "VIRTUAL_ENV": "/v", "A": "1"}, None)
    assert env == {"A": "1"}
    assert worker_env({"PYTHONPATH": "/site"}, "/user-site") == {
        "PYTHONPATH": "/user-site"
    }


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model_manager.py").write_text(MODEL_MANAGER)
    with Worker(sys.executable, repo, "learner") as running:
        yield running


def test_a_task_trains_the_users_model_in_the_worker(worker: Worker) -> None:
    with WorkerSession(worker.socket_path, timeout=60) as session:
        session.new()
        w, b = session.get_parameters()
        assert w.dtype == np.float32 and b.dtype == np.int64
        session.set_parameters([w + 1, b])
        assert session.fit()["examples"] == 10
        assert session.get_parameters()[0][0, 0] == 2
        evaluation = session.evaluate()
        assert (evaluation["examples"], evaluation["loss"], evaluation["accuracy"]) == (
            4,
            0.5,
            0.75,
        )
        assert evaluation["logged"] is None  # the repo never names mlflow
    # A new task: a fresh ModelManager in a fresh process.
    with WorkerSession(worker.socket_path, timeout=60) as session:
        session.new()
        assert session.get_parameters()[0][0, 0] == 0


def test_the_users_errors_name_the_method_and_line(worker: Worker) -> None:
    with WorkerSession(worker.socket_path, timeout=60) as session:
        session.new()
        session.set_parameters([-np.ones((2, 3), dtype=np.float32), np.zeros(3)])
        with pytest.raises(UserCodeError) as caught:
            session.fit()
    assert "fit_model() raised ValueError: negative weights" in str(caught.value)
    assert "model_manager.py line" in str(caught.value)


def test_a_task_that_kills_its_process_fails_alone(worker: Worker) -> None:
    with WorkerSession(worker.socket_path, timeout=60) as session:
        session.new()
        session.set_parameters([np.full((2, 3), 500, dtype=np.float32), np.zeros(3)])
        with pytest.raises(UserCodeError, match="exited during fit"):
            session.fit()
    with WorkerSession(worker.socket_path, timeout=60) as session:  # still serving
        session.new()
        assert session.fit()["examples"] == 10


def test_the_worker_learns_what_its_tasks_import(tmp_path: Path) -> None:
    """A module a task imports lazily is imported by the worker once the task
    ends, so later tasks find it loaded (they are forked from the worker)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "lazy_helper.py").write_text("VALUE = 3\n")
    (repo / "model_manager.py").write_text(
        MODEL_MANAGER.replace(
            "    def fit_model(self):\n",
            "    def fit_model(self):\n"
            "        import sys\n"
            "        self.b = self.b + ('lazy_helper' in sys.modules)\n"
            "        import lazy_helper  # noqa: F401\n",
        )
    )
    seen = []
    with Worker(sys.executable, repo, "learner") as worker:
        for _ in range(3):
            with WorkerSession(worker.socket_path, timeout=60) as session:
                session.new()
                session.fit()
                seen.append(int(session.get_parameters()[1][0]))
            time.sleep(1.5)  # the worker reaps the task and learns its imports
    assert seen[0] == 0  # the first task imported it itself
    assert seen[-1] == 1  # a later one found it already there

"""A learner's own MLflow calls (autolog): captured by the model worker in the
task, shipped in the reply, logged into the learner's run by the aggregator.

The worker runs a real repo calling `mlflow.sklearn.autolog()` with the real
MLflow; the aggregator side logs into a real MLflow store (SQLite).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from flwr.app import ConfigRecord

from flops import events
from flops.app.run_tracker import RunTracker
from flops.worker.autolog import AutologCall, _once, autolog_calls
from flops.worker.client import Worker, WorkerSession

AUTOLOGGING_MANAGER = """
import mlflow
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression


class ModelManager:
    def __init__(self):
        self.model = LogisticRegression(max_iter=20, C=0.5)
        self.X, self.y = load_digits(return_X_y=True)
        self.model.fit(self.X[:50], self.y[:50])

    def get_model(self):
        return self.model

    def get_model_parameters(self):
        return [self.model.coef_, self.model.intercept_]

    def set_model_parameters(self, parameters):
        self.model.coef_, self.model.intercept_ = parameters

    def set_model_data(self):
        pass

    def fit_model(self):
        mlflow.sklearn.autolog()
        self.model.fit(self.X, self.y)
        return len(self.X)

    def evaluate_model(self):
        mlflow.log_metric("hand_logged", 0.25)
        return 0.1, float(self.model.score(self.X, self.y)), len(self.X)
"""


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One fit and one evaluate of the autologging repo, through a real worker."""
    repo = tmp_path_factory.mktemp("repo")
    (repo / "model_manager.py").write_text(AUTOLOGGING_MANAGER)
    workdir = tmp_path_factory.mktemp("workdir")
    here = Path.cwd()
    os.chdir(workdir)  # where MLflow's default store would land
    try:
        with Worker(sys.executable, repo, "learner") as worker:
            # One connection per task, as Flower's tasks come: a round's fit,
            # then the job's final evaluate.
            with WorkerSession(worker.socket_path, timeout=120) as session:
                session.new(requirements=["scikit-learn>=1.0"])
                fit = session.fit()
            with WorkerSession(worker.socket_path, timeout=120) as session:
                session.new(requirements=["scikit-learn>=1.0"])
                evaluate = session.evaluate(final=True)
            return {
                "fit": fit,
                "evaluate": evaluate,
                "workdir": sorted(p.name for p in workdir.iterdir()),
            }
    finally:
        os.chdir(here)


def _record(result: dict[str, Any]) -> ConfigRecord:
    record = ConfigRecord({"logged": json.dumps(result["logged"])})
    if result["artifacts"]:
        record["artifacts"] = result["artifacts"]
    return record


def test_the_worker_keeps_what_autolog_logged_in_the_task(
    captured: dict[str, Any],
) -> None:
    fit = captured["fit"]
    # One run: the constructor's fit, before the repo calls autolog, logs
    # nothing (as without FLOps), and nothing lands in the working directory.
    (run,) = fit["logged"]["runs"]
    assert captured["workdir"] == []
    assert run["params"]["C"] == "0.5"
    assert run["tags"]["estimator_name"] == "LogisticRegression"
    assert "training_score" in {key for key, *_ in run["metrics"]}
    # MLflow's post-fit metrics and plots are computed after the fit replied...
    assert "training_accuracy_score" not in {key for key, *_ in run["metrics"]}
    # ... and shipped with the next reply, for the same run and its place.
    evaluate = captured["evaluate"]
    (later,) = evaluate["logged"]["later"]
    (added,) = later["runs"]
    assert (added["run_id"], added["index"]) == (run["run_id"], 0)
    assert "training_accuracy_score" in {key for key, *_ in added["metrics"]}
    assert "training_score" not in {key for key, *_ in added["metrics"]}
    with tarfile.open(fileobj=io.BytesIO(evaluate["artifacts"]), mode="r:gz") as tar:
        assert "later/0/runs/0/training_confusion_matrix.png" in tar.getnames()
    with tarfile.open(fileobj=io.BytesIO(fit["artifacts"]), mode="r:gz") as tar:
        names = tar.getnames()
        requirements = next(n for n in names if n.endswith("requirements.txt"))
        pins = tar.extractfile(requirements).read().decode()  # type: ignore[union-attr]
    assert any(n.endswith("MLmodel") for n in names)
    # Requirement inference is answered from what is installed, not a subprocess.
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in pins
    (evaluated,) = captured["evaluate"]["logged"]["runs"]
    assert [m[:2] for m in evaluated["metrics"]] == [["hand_logged", 0.25]]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, Path]:
    """One real MLflow store (creating its tables takes seconds) for the module."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=str(root / "a"))
    return client, experiment, root


@pytest.fixture
def tracker(store: tuple[Any, str, Path]) -> tuple[RunTracker, Any, str]:
    """A fresh job run, whose learners' runs are its children."""
    client, experiment, root = store
    run = client.create_run(experiment)
    return RunTracker(client, experiment, run.info.run_id), client, str(root)


def test_the_aggregator_logs_it_into_the_learners_run(
    captured: dict[str, Any], tracker: tuple[RunTracker, Any, str]
) -> None:
    runs, client, _ = tracker
    for server_round in (1, 2):
        runs.log_captured("learner-0", server_round, "fit", _record(captured["fit"]))
    runs.log_captured("learner-0", 2, "evaluate", _record(captured["evaluate"]))
    child = client.get_run(runs._children["learner-0"])
    assert child.data.params["C"] == "0.5"
    assert child.data.tags["estimator_name"] == "LogisticRegression"
    history = client.get_metric_history(child.info.run_id, "training_score")
    assert [m.step for m in history] == [1, 2]
    # What the fit logged after replying lands at the round of that fit (the
    # record above was the second round's), beside what it logged before.
    later = client.get_metric_history(child.info.run_id, "training_accuracy_score")
    assert [m.step for m in later] == [2]
    plots = client.list_artifacts(child.info.run_id, "autolog/round-2/fit/runs/0")
    assert "autolog/round-2/fit/runs/0/training_confusion_matrix.png" in {
        f.path for f in plots
    }
    assert not client.list_artifacts(
        child.info.run_id, "autolog/round-2/evaluate/later"
    )
    assert child.data.metrics["hand_logged"] == 0.25
    models = [
        f.path
        for f in client.list_artifacts(child.info.run_id, "autolog/round-2/fit/models")
    ]
    assert len(models) == 1
    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/{models[0]}")
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    assert np.mean(model.predict(X) == y) > 0.8


def _tar(name: str, size: int = 1, kind: bytes = tarfile.REGTYPE) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "member",
    [
        {"name": "../../escaped.txt"},
        {"name": "runs/0/link", "kind": tarfile.SYMTYPE},
        {"name": "runs/0/big", "size": 257 * 2**20},
    ],
    ids=["parent-path", "symlink-out", "unpacks-too-big"],
)
def test_a_learners_hostile_artifacts_are_refused_with_a_warning(
    member: dict[str, Any],
    tracker: tuple[RunTracker, Any, str],
    store: tuple[Any, str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs, _, _ = tracker
    blob = _tar(**member)
    record = ConfigRecord({"logged": json.dumps({"runs": []}), "artifacts": blob})
    runs.log_captured("learner-1", 3, "fit", record)
    warnings = [
        e
        for line in capsys.readouterr().out.splitlines()
        if (e := events.parse_event(line)) and e["type"] == events.WARNING
    ]
    assert len(warnings) == 1
    assert "learner-1, round 3 fit" in warnings[0]["message"]
    assert "not logged" in warnings[0]["message"]
    assert not list(store[2].rglob("escaped.txt"))
    assert not list(store[2].rglob("big"))


def test_an_absolute_path_in_a_learners_artifacts_stays_inside_the_run(
    tracker: tuple[RunTracker, Any, str],
) -> None:
    runs, client, _ = tracker
    blob = _tar("/tmp/flops-escaped.txt")
    record = ConfigRecord({"logged": json.dumps({"runs": []}), "artifacts": blob})
    runs.log_captured("learner-1", 1, "fit", record)
    assert not Path("/tmp/flops-escaped.txt").exists()
    child = runs._children["learner-1"]
    names = [f.path for f in client.list_artifacts(child, "autolog/round-1/fit/tmp")]
    assert names == ["autolog/round-1/fit/tmp/flops-escaped.txt"]


def test_the_repos_literal_autolog_calls_are_found_without_importing_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "model_manager.py").write_text(
        "import mlflow\n"
        "def fit():\n"
        "    mlflow.sklearn.autolog(log_models=False, silent=True)\n"
        "    mlflow.autolog()\n"
        "    mlflow.pytorch.autolog(registered_model_name=NAME)\n"
    )
    (tmp_path / "plain.py").write_text("x = 1\n")
    mentions, calls = autolog_calls(tmp_path)
    assert mentions
    assert calls == [
        AutologCall("mlflow.sklearn", (("log_models", False), ("silent", True))),
        AutologCall("mlflow", ()),
        AutologCall("mlflow.pytorch", None),  # not a literal: the task makes it
    ]
    (tmp_path / "model_manager.py").write_text("import numpy\n")
    assert autolog_calls(tmp_path) == (False, [])


def test_a_repeated_autolog_call_with_the_same_arguments_changes_nothing() -> None:
    made: list[dict[str, Any]] = []
    enabled: list[bool] = []

    def autolog(**kwargs: Any) -> None:
        made.append(kwargs)

    once = _once(autolog, {"log_models": False}, lambda: enabled.append(True))
    once(log_models=False)
    assert made == [] and enabled == [True]  # prepared: only switched on
    once(disable=True)
    once(log_models=False)  # after a change, every call goes through
    assert made == [{"disable": True}, {"log_models": False}]


def test_content_for_a_run_no_earlier_task_sent_is_left_out_with_a_warning(
    tracker: tuple[RunTracker, Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    runs, client, _ = tracker
    later = {"runs": [{"run_id": "not-sent", "index": 0, "metrics": [["x", 1, 0, 0]]}]}
    record = ConfigRecord({"logged": json.dumps({"runs": [], "later": [later]})})
    runs.log_captured("learner-2", 4, "evaluate", record)
    assert "x" not in client.get_run(runs._children["learner-2"]).data.metrics
    (warning,) = [
        e
        for line in capsys.readouterr().out.splitlines()
        if (e := events.parse_event(line)) and e["type"] == events.WARNING
    ]
    assert "learner-2, round 4 evaluate" in warning["message"]
    assert "no earlier task" in warning["message"]

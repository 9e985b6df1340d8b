"""Flower apps as they are: `[tool.flwr.app]` repos whose own ServerApp,
ClientApp and strategy run on FLOps, tracked in MLflow like contract repos.

Fixtures under tests/fixtures/repos/flower-*: Flower's quickstart examples with
their data loading replaced by each learner's local data (`data-path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "repos"


def stage(project: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(s for s in project["stages"] if s["name"] == name))


def test_a_flower_sklearn_app_runs_as_it_is_in_containers(
    stack: Stack, tabular: str, mlflow_client: Any, tmp_path: Path
) -> None:
    """On the docker backend: the app's own code in the FL-actor image's user
    packages (with FLOps' Flower), tracked like any run."""
    repo = make_repo(tmp_path / "repo", FIXTURES / "flower-sklearn-tabular")
    result, project = stack.submit(
        str(repo),
        "--orchestrator",
        "docker",
        "--learners",
        "2",
        "--data-tag",
        tabular,
        # The app's own run config, overridden from the submission.
        "--app-config",
        "num-server-rounds=2",
        "--app-config",
        "local-epochs=5",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert project["status"] == "succeeded", project.get("error")
    assert "Flower app: sklearnexample.server_app:app" in stage(project, "check")["log"]
    # FLOps' Flower, without Ray: said in the build log.
    assert "'simulation' extra (Ray) is left out" in stage(project, "check")["log"]
    assert project["config"]["rounds"] == 2
    assert project["images"]["fl_actor"]["reference"]
    for name in ("register", "inference_image"):
        assert stage(project, name)["status"] == "skipped"
    assert "model-export hook" in stage(project, "register")["log"]

    run_id = project["mlflow"]["run_id"]
    # What the app's strategy aggregates, per round, at step = round.
    accuracy = mlflow_client.get_metric_history(run_id, "eval_accuracy")
    assert sorted(m.step for m in accuracy) == [1, 2]
    assert max(accuracy, key=lambda m: m.step).value > 0.8
    assert mlflow_client.get_metric_history(run_id, "train_train_logloss")
    # One child run per learner, named, with its own metrics.
    run = mlflow_client.get_run(run_id)
    children = mlflow_client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["learner-0", "learner-1"]
    assert all("eval_accuracy" in c.data.metrics for c in children)
    # The final arrays, loadable without the app.
    local = mlflow_client.download_artifacts(run_id, "final_arrays", str(tmp_path))
    arrays = np.load(Path(local) / "arrays.npz")
    assert [arrays[k].shape for k in arrays.files] == [(3, 4), (3,)]

    events = [e["type"] for e in stack.events(project["id"])]
    assert events.count("round_finished") == 2
    assert "learner_joined" in events


def test_a_flower_app_override_of_an_undeclared_key_is_refused(
    stack: Stack, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", FIXTURES / "flower-sklearn-tabular")
    result, project = stack.submit(str(repo), "--app-config", "learning-rate=0.1")
    assert result.returncode != 0
    assert project["status"] == "failed"
    assert "learning-rate" in project["error"]
    assert "it declares: data-tag, fraction-train" in project["error"]


def test_a_flower_pytorch_app_with_an_export_hook_is_registered(
    stack: Stack,
    digit_images: str,
    digits_file: Path,
    mlflow_client: Any,
    tmp_path: Path,
) -> None:
    import mlflow
    import pyarrow.parquet as pq

    repo = make_repo(tmp_path / "repo", FIXTURES / "flower-pytorch")
    result, project = stack.submit(
        str(repo), "--learners", "2", "--data-tag", digit_images, "--rounds", "2"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert project["status"] == "succeeded", project.get("error")
    run_id = project["mlflow"]["run_id"]
    accuracy = mlflow_client.get_metric_history(run_id, "eval_eval_acc")
    assert sorted(m.step for m in accuracy) == [1, 2]
    # The hook's model, registered as any: it predicts digits.
    assert stage(project, "register")["status"] == "succeeded"
    name = project["mlflow"]["model_name"]
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    table = pq.read_table(digits_file)
    images = np.asarray(table.column("image").to_pylist(), dtype=np.float32)[:200]
    x = ((images / 16.0 - 0.5) / 0.5).reshape(-1, 1, 8, 8)
    y = np.asarray(table.column("label").to_pylist())[:200]
    scores = np.asarray(model.predict(x))
    assert float((scores.argmax(axis=1) == y).mean()) > 0.5

"""Both examples trained end to end: real git repos, real Flower, real MLflow.

2 learners x 3 rounds each, as a user runs them with `flops project submit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import EXAMPLES, git, make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration

STAGES = [
    "clone",
    "check",
    "augment",
    "build",
    "schedule",
    "train",
    "register",
    "inference_image",
]


def digits_sample(stack: Stack) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(
        next((stack.home / "data" / "local" / "digits").glob("*.parquet"))
    )
    x = np.asarray(table.column("image").to_pylist(), dtype=np.float32) / 16.0
    return x, np.asarray(table.column("label").to_pylist())


def check_tracking(
    stack: Stack, mlflow_client: Any, project: dict[str, Any], rounds: int
) -> None:
    run_id = project["mlflow"]["run_id"]
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["commit"] == project["commit"]
    assert run.data.params["rounds"] == str(rounds)
    assert run.data.params["flops_version"]
    for key in (
        "eval_accuracy",
        "eval_loss",
        "round_seconds",
        "aggregation_seconds",
        "slowest_learner_seconds",
        "bytes_sent",
        "bytes_received",
    ):
        history = mlflow_client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(1, rounds + 1)), key
    children = mlflow_client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert sorted(c.data.tags["flops.learner"] for c in children) == [
        "learner-0",
        "learner-1",
    ]
    for child in children:
        steps = [
            m.step
            for m in mlflow_client.get_metric_history(
                child.info.run_id, "eval_accuracy"
            )
        ]
        assert sorted(steps) == list(range(1, rounds + 1))


def check_project(stack: Stack, project: dict[str, Any], repo: Path) -> None:
    assert project["status"] == "succeeded", project.get("error")
    assert [s["name"] for s in project["stages"]] == STAGES
    for stage in project["stages"]:
        # No inference image was asked for: that stage says so and is skipped.
        expected = "skipped" if stage["name"] == "inference_image" else "succeeded"
        assert stage["status"] == expected, stage
        assert stage["started_at"] <= stage["finished_at"]
    assert project["commit"] == git(repo, "rev-parse", "HEAD")
    mlflow = project["mlflow"]
    assert set(mlflow) >= {
        "tracking_uri",
        "experiment_id",
        "run_id",
        "model_name",
        "model_version",
    }
    assert mlflow["model_name"] == f"local.{project['name']}"
    assert project["error"] is None
    shown = stack.show(project["id"])
    assert {"id", "status", "stages", "commit", "mlflow", "error"} <= set(shown)


def train_example(
    stack: Stack, example: str, digits: str, mlflow_client: Any, tmp_path: Path
) -> tuple[dict[str, Any], Any]:
    """Submit an example as a fresh git repo, 2 learners x 3 rounds, and check the
    project and its tracking; return the project and its registered model."""
    import mlflow

    repo = make_repo(tmp_path / example, EXAMPLES / example)
    result, project = stack.submit(
        str(repo), "--rounds", "3", "--learners", "2", "--data-tag", digits
    )
    assert result.returncode == 0, result.stderr + result.stdout
    check_project(stack, project, repo)
    check_tracking(stack, mlflow_client, project, rounds=3)
    name = project["mlflow"]["model_name"]
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.metadata.signature is not None
    return project, model


def test_mnist_sklearn(
    stack: Stack, digits: str, mlflow_client: Any, tmp_path: Path
) -> None:
    project, model = train_example(
        stack, "mnist-sklearn", digits, mlflow_client, tmp_path
    )
    run_id = project["mlflow"]["run_id"]
    accuracy = mlflow_client.get_metric_history(run_id, "eval_accuracy")
    assert max(accuracy, key=lambda m: m.step).value > 0.8
    x, y = digits_sample(stack)
    assert (model.predict(x[:300]) == y[:300]).mean() > 0.8
    name = project["mlflow"]["model_name"]
    version = mlflow_client.get_model_version_by_alias(name, "champion")
    assert version.version == project["mlflow"]["model_version"]
    assert version.tags["flops.project_id"] == project["id"]
    listed = stack.flops("project", "list", "--format", "json")
    assert project["id"] in listed.stdout


def test_pytorch_cnn(
    stack: Stack, digits: str, mlflow_client: Any, tmp_path: Path
) -> None:
    _, model = train_example(stack, "pytorch-cnn", digits, mlflow_client, tmp_path)
    x, y = digits_sample(stack)
    logits = model.predict(x[:300].reshape(-1, 1, 8, 8))
    assert logits.shape == (300, 10)
    assert (np.asarray(logits).argmax(axis=1) == y[:300]).mean() > 0.5

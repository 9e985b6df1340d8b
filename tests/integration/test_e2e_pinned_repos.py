"""Repos as they come: pins that collide with FLOps' own runtime, trained as they
are (the user's code in its own environment, the model worker), their models
loadable in FLOps' environment and in the one the model records.

Fixture repos under tests/fixtures/repos; their data is made here, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.fixtures.tabular import FEATURES, make_tabular
from tests.helpers import make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "repos"
UV = Path(sys.executable).parent / "uv"


@pytest.fixture(scope="module")
def tabular_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tabular(tmp_path_factory.mktemp("tabular") / "iris.parquet")


@pytest.fixture(scope="module")
def tabular(stack: Stack, tabular_file: Path) -> str:
    pushed = stack.flops(
        "data", "push", str(tabular_file), "--tag", "iris", "--partitions", "2"
    )
    assert pushed.returncode == 0, pushed.stderr
    return "iris"


def stage_log(project: dict[str, Any], name: str) -> str:
    return next(s["log"] for s in project["stages"] if s["name"] == name)


def requirements_of(model_uri: str) -> list[str]:
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(model_uri))
    return (folder / "requirements.txt").read_text().split()


LOAD_AND_PREDICT = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
predicted = model.predict(frame[json.loads(sys.argv[3])])
print(json.dumps({"mlflow": mlflow.__version__,
                  "accuracy": float((predicted == frame["species"]).mean())}))
"""


def predict_in_recorded_environment(
    requirements: list[str], model_uri: str, data: Path, tmp_path: Path
) -> dict[str, Any]:
    """A fresh environment from the model's own requirements.txt, as MLflow's
    `env_manager` would make it, loading the registered model from MLflow."""
    venv = tmp_path / "recorded-env"
    subprocess.run(
        [str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True
    )
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(python), *requirements],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    ran = subprocess.run(
        [
            str(python),
            "-c",
            LOAD_AND_PREDICT,
            model_uri,
            str(data),
            json.dumps(FEATURES),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return dict(json.loads(ran.stdout.strip().splitlines()[-1]))


def test_mlflow_exported_sklearn_repo_runs_unchanged(
    stack: Stack, tabular: str, tabular_file: Path, mlflow_client: Any, tmp_path: Path
) -> None:
    import mlflow

    repo = make_repo(tmp_path / "repo", FIXTURES / "sklearn-mlflow-export")
    result, project = stack.submit(
        str(repo), "--rounds", "3", "--learners", "2", "--data-tag", tabular
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert project["status"] == "succeeded", project.get("error")
    build = stage_log(project, "build")
    # Asked for 3.10.14, which this host does not have: the log says what is used.
    assert "asks for Python 3.10.14" in build
    assert f"Python {sys.version.split()[0]} is used" in build

    accuracy = mlflow_client.get_metric_history(
        project["mlflow"]["run_id"], "eval_accuracy"
    )
    assert max(accuracy, key=lambda m: m.step).value > 0.85

    uri = f"models:/{project['mlflow']['model_name']}@champion"
    requirements = requirements_of(uri)
    # What the user's code ran with, as the repo pinned it.
    for pin in (
        "mlflow==2.12.1",
        "scikit-learn==1.4.2",
        "numpy==1.26.4",
        "pandas==2.2.1",
    ):
        assert pin in requirements, requirements

    # In FLOps' own environment (MLflow 3): column names kept, order irrelevant.
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.signature.inputs.input_names() == FEATURES
    frame = pq.read_table(tabular_file).to_pandas()
    straight = model.predict(frame[FEATURES])
    reordered = model.predict(frame[FEATURES[::-1]])
    assert np.array_equal(straight, reordered)
    assert (straight == frame["species"]).mean() > 0.85

    # In the model's own recorded environment (MLflow 2.12.1, NumPy 1.26.4).
    recorded = predict_in_recorded_environment(
        requirements, uri, tabular_file, tmp_path
    )
    assert recorded["mlflow"] == "2.12.1"
    assert recorded["accuracy"] > 0.85

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

from tests.fixtures.tabular import FEATURES
from tests.helpers import make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "repos"
UV = Path(sys.executable).parent / "uv"


def stage_log(project: dict[str, Any], name: str) -> str:
    return next(s["log"] for s in project["stages"] if s["name"] == name)


def requirements_of(model_uri: str) -> list[str]:
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(model_uri))
    return (folder / "requirements.txt").read_text().split()


# Run in the model's recorded environment: argv = model URI, data, features.
PREDICT_TABULAR = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
predicted = model.predict(frame[json.loads(sys.argv[3])])
print(json.dumps({"mlflow": mlflow.__version__,
                  "accuracy": float((predicted == frame["species"]).mean())}))
"""
PREDICT_DIGITS = """
import json, sys
import mlflow, numpy as np, pyarrow.parquet as pq
model = mlflow.pyfunc.load_model(sys.argv[1])
table = pq.read_table(sys.argv[2])
x = np.asarray(table.column("image").to_pylist(), dtype=np.float32)[:300] / 16.0
y = np.asarray(table.column("label").to_pylist())[:300]
scores = np.asarray(model.predict(x))
print(json.dumps({"mlflow": mlflow.__version__,
                  "accuracy": float((scores.argmax(axis=1) == y).mean())}))
"""


def installer_cache(stack: Stack, tmp_path: Path) -> Path:
    """A copy, hard-linked (instant, no disk), of the uv cache the service built
    the user's environments with: the recorded environment's packages are the
    same versions, so they are not downloaded again (TensorFlow, CUDA torch are
    gigabytes). A copy, so that this root process never writes into the cache
    the tenant's sandboxed builds own."""
    copy = tmp_path / "uv-cache"
    source = stack.home / "cache" / "installer" / "local"
    if source.is_dir():
        subprocess.run(["cp", "-al", str(source), str(copy)], check=True)
    return copy


def predict_in_recorded_environment(
    requirements: list[str],
    model_uri: str,
    data: Path,
    tmp_path: Path,
    script: str = "",
    extra: tuple[str, ...] = (),
    cache: Path | None = None,
) -> dict[str, Any]:
    """A fresh environment from the model's own requirements.txt, as MLflow's
    `env_manager` would make it, loading the registered model from MLflow."""
    venv = tmp_path / "recorded-env"
    subprocess.run(
        [str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True
    )
    python = venv / "bin" / "python"
    env = {**os.environ, "UV_CACHE_DIR": str(cache)} if cache else None
    installed = subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(python), *requirements],
        capture_output=True,
        text=True,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr
    ran = subprocess.run(
        [str(python), "-c", script or PREDICT_TABULAR, model_uri, str(data), *extra],
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

    run_id = project["mlflow"]["run_id"]
    accuracy = mlflow_client.get_metric_history(run_id, "eval_accuracy")
    assert max(accuracy, key=lambda m: m.step).value > 0.85
    # What autolog logged in each learner's fit, in that learner's run.
    run = mlflow_client.get_run(run_id)
    (learner,) = mlflow_client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}' "
        "and tags.`flops.learner` = 'learner-0'",
    )
    assert learner.data.params["max_iter"] == "30"
    assert learner.data.tags["estimator_name"] == "LogisticRegression"
    scores = mlflow_client.get_metric_history(
        learner.info.run_id, "training_accuracy_score"
    )
    assert sorted(m.step for m in scores) == [1, 2, 3]
    logged = [
        f.path
        for f in mlflow_client.list_artifacts(
            learner.info.run_id, "autolog/round-3/fit/runs/0"
        )
    ]
    assert "autolog/round-3/fit/runs/0/model" in logged  # MLflow 2: a run artifact
    # MLflow's post-fit plots, drawn after the fit replied, land in their round.
    assert "autolog/round-3/fit/runs/0/training_confusion_matrix.png" in logged

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
        requirements,
        uri,
        tabular_file,
        tmp_path,
        extra=(json.dumps(FEATURES),),
        cache=installer_cache(stack, tmp_path),
    )
    assert recorded["mlflow"] == "2.12.1"
    assert recorded["accuracy"] > 0.85


def test_keras_repo_on_tensorflow_2_12_and_numpy_1_23(
    stack: Stack, digits: str, digits_file: Path, mlflow_client: Any, tmp_path: Path
) -> None:
    """tensorflow==2.12.0, numpy==1.23.5, protobuf==3.20.3: a set that cannot
    share one environment with flwr 1.41 and MLflow 3, trained as it is."""
    repo = make_repo(tmp_path / "repo", FIXTURES / "keras-tf212")
    result, project = stack.submit(
        str(repo), "--rounds", "2", "--learners", "2", "--data-tag", digits
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert project["status"] == "succeeded", project.get("error")
    build = stage_log(project, "build")
    # pyarrow 21+ refuses NumPy 1 at import: the rule that kept it back is named.
    assert "pyarrow<21 is used" in build
    accuracy = mlflow_client.get_metric_history(
        project["mlflow"]["run_id"], "eval_accuracy"
    )
    assert max(accuracy, key=lambda m: m.step).value > 0.8

    uri = f"models:/{project['mlflow']['model_name']}@champion"
    requirements = requirements_of(uri)
    for pin in ("tensorflow==2.12.0", "numpy==1.23.5", "protobuf==3.20.3"):
        assert pin in requirements, requirements
    recorded = predict_in_recorded_environment(
        requirements,
        uri,
        digits_file,
        tmp_path,
        script=PREDICT_DIGITS,
        cache=installer_cache(stack, tmp_path),
    )
    assert recorded["accuracy"] > 0.8


PREDICT_IMAGES = """
import json, sys
import mlflow, numpy as np, pyarrow.parquet as pq
model = mlflow.pyfunc.load_model(sys.argv[1])
table = pq.read_table(sys.argv[2])
x = np.asarray(table.column("image").to_pylist(), dtype=np.float32)[:300]
x = (x / 16.0 - 0.5) / 0.5  # the repo's Normalize(0.5, 0.5) of 0..1 pixels
y = np.asarray(table.column("label").to_pylist())[:300]
scores = np.asarray(model.predict(x.reshape(-1, 1, 8, 8)))
print(json.dumps({"mlflow": mlflow.__version__,
                  "accuracy": float((scores.argmax(axis=1) == y).mean())}))
"""


def test_pytorch_repo_pinning_torch_2_1_1_with_image_datasets(
    stack: Stack,
    digit_images: str,
    digits_file: Path,
    mlflow_client: Any,
    tmp_path: Path,
) -> None:
    """torch==2.1.1 (PyPI's CUDA build, past the host's CPU wheel), torchvision
    following it, HF `Image` columns split and transformed by the repo."""
    repo = make_repo(tmp_path / "repo", FIXTURES / "pytorch-pinned")
    result, project = stack.submit(
        str(repo), "--rounds", "2", "--learners", "2", "--data-tag", digit_images
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert project["status"] == "succeeded", project.get("error")
    build = stage_log(project, "build")
    # The heavy choices are named: the CUDA build, its size, the wheel passed over.
    assert "torch 2.1.1: CUDA build" in build
    assert "environment size:" in build
    if any(
        Path(link).glob("torch-*.whl")
        for link in os.environ.get("PIP_FIND_LINKS", "").split()
    ):
        assert "the host's local wheel torch" in build
    # torch 2.1.1 cannot run on NumPy 2: the rule that kept NumPy 1 is named.
    assert "numpy<2 is used" in build
    accuracy = mlflow_client.get_metric_history(
        project["mlflow"]["run_id"], "eval_accuracy"
    )
    assert max(accuracy, key=lambda m: m.step).value > 0.8

    uri = f"models:/{project['mlflow']['model_name']}@champion"
    requirements = requirements_of(uri)
    assert "torch==2.1.1" in requirements, requirements
    # The NumPy 1 it trained with (a NumPy 2 would break torch 2.1 where it loads).
    assert any(r.startswith("numpy==1.") for r in requirements), requirements
    assert any(r.startswith("torchvision==0.16.") for r in requirements), requirements
    recorded = predict_in_recorded_environment(
        requirements,
        uri,
        digits_file,
        tmp_path,
        script=PREDICT_IMAGES,
        cache=installer_cache(stack, tmp_path),
    )
    assert recorded["accuracy"] > 0.8

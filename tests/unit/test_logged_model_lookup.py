"""The model a run logged, found in MLflow when its aggregator's event was lost
(a backend whose logs lose lines): a real MLflow store (SQLite)."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from flops_management.pipeline.tracking import Tracking


def test_the_runs_ready_model_is_found_and_no_other(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("job")
    run, other = client.create_run(experiment), client.create_run(experiment)
    assert Tracking(uri).logged_model_uri(experiment, run.info.run_id) is None
    pending = client.create_logged_model(
        experiment, name="model", source_run_id=run.info.run_id
    )
    elsewhere = client.create_logged_model(
        experiment, name="model", source_run_id=other.info.run_id
    )
    client.finalize_logged_model(elsewhere.model_id, LoggedModelStatus.READY)
    # Not finalized yet: not the run's model.
    assert Tracking(uri).logged_model_uri(experiment, run.info.run_id) is None
    client.finalize_logged_model(pending.model_id, LoggedModelStatus.READY)
    assert (
        Tracking(uri).logged_model_uri(experiment, run.info.run_id)
        == f"models:/{pending.model_id}"
    )

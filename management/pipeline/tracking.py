"""The management service's side of MLflow: experiments, parent runs, the registry.

The aggregator logs rounds and the model into the parent run created here; this
module then registers that model under the project's name with alias `champion`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

import flops
from flops.errors import ServiceUnavailableError, TrainingError

CHAMPION = "champion"

# MLflow's client retries an unreachable server for minutes by default; the
# service checks reachability itself and wants failures fast and readable.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def experiment_name(tenant: str, project_name: str) -> str:
    return f"{tenant}/{project_name}"


def model_name(tenant: str, project_name: str) -> str:
    # Namespaced: the registry is shared, and one tenant's `champion` must never
    # move because another tenant trained a model with the same project name.
    return f"{tenant}.{project_name}"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class Tracking:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def check_reachable(self) -> None:
        if not self.tracking_uri.startswith("http"):
            return
        try:
            httpx.get(
                f"{self.tracking_uri.rstrip('/')}/health", timeout=5
            ).raise_for_status()
        except httpx.HTTPError as err:
            raise ServiceUnavailableError(
                f"MLflow at {self.tracking_uri} is not reachable ({err}).",
                hint="Start the embedded stack with `flops up`, or point "
                "FLOPS_MLFLOW_TRACKING_URI at a running MLflow server.",
            ) from err

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def experiment_id(self, name: str) -> str | None:
        found = self._client().get_experiment_by_name(name)
        return None if found is None else str(found.experiment_id)

    def create_experiment(self, name: str) -> str:
        return str(self._client().create_experiment(name))

    def model_exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self._client().get_registered_model(name)
        except MlflowException:
            return False
        return True

    def logged_model_uri(self, experiment_id: str, run_id: str) -> str | None:
        """The READY model a run logged (`models:/<id>`), when its aggregator's
        event saying so was not seen (a backend whose logs lose lines)."""
        from mlflow.entities import LoggedModelStatus

        found = self._client().search_logged_models(
            experiment_ids=[experiment_id],
            # MLflow's search matches no `status` (3.17): checked below.
            filter_string=f"source_run_id = '{run_id}'",
        )
        ready = [m for m in found if m.status == LoggedModelStatus.READY]
        return f"models:/{ready[0].model_id}" if ready else None

    def start_run(
        self,
        experiment_id: str,
        run_name: str,
        params: dict[str, str],
        tags: dict[str, str],
    ) -> str:
        """Create the job's parent run in the experiment; its id."""
        client = self._client()
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        from mlflow.entities import Param

        batch = [Param(key, value[:6000]) for key, value in params.items()]
        batch.append(Param("flops_version", flops.__version__))
        client.log_batch(run.info.run_id, params=batch)
        return str(run.info.run_id)

    def finish_run(self, run_id: str, status: str) -> None:
        self._client().set_terminated(run_id, status=status)

    def finish_run_if_running(self, run_id: str, status: str) -> None:
        """Close the run and its child runs that are still open (a cluster
        that did not reach the end left its learners' runs open too)."""
        client = self._client()
        run = client.get_run(run_id)
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        )
        for found in [run, *children]:
            if found.info.status == "RUNNING":
                client.set_terminated(found.info.run_id, status=status)

    def check_job_model(self, model_uri: str, experiment_id: str, run_id: str) -> None:
        """TrainingError unless `model_uri` names a model logged by this job's run.

        The URI arrives in an event printed by the aggregator, which runs the
        tenant's code: a forged one must not make the service (an MLflow admin)
        register and serve another run's, or another tenant's, model.
        """
        prefix = "models:/"
        model_id = model_uri.removeprefix(prefix)
        if not model_uri.startswith(prefix) or not model_id or "/" in model_id:
            raise TrainingError(
                f"The aggregator reported {model_uri!r}, not a logged model id."
            )
        try:
            model = self._client().get_logged_model(model_id)
        except Exception as err:  # MLflow's RestException: not found or forbidden
            raise TrainingError(
                f"The aggregator reported model {model_id}, which MLflow does not "
                f"know ({type(err).__name__})."
            ) from None
        if model.experiment_id != experiment_id or model.source_run_id != run_id:
            raise TrainingError(
                f"The aggregator reported model {model_id}, which this job's run did "
                "not log; it is not registered."
            )

    def register(self, model_uri: str, name: str, tags: dict[str, str]) -> str:
        """Register the model, point `champion` at the new version; return it."""
        import mlflow

        client = self._client()
        mlflow.set_tracking_uri(self.tracking_uri)
        version = mlflow.register_model(model_uri, name, tags=tags)
        client.set_registered_model_alias(name, CHAMPION, version.version)
        return str(version.version)

    def download_model(self, name: str, version: str, dest: Path) -> Path:
        """The registered version's files (MLmodel, requirements.txt, ...)."""
        from mlflow.artifacts import download_artifacts

        dest.mkdir(parents=True, exist_ok=True)
        path = download_artifacts(
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(dest),
            tracking_uri=self.tracking_uri,
        )
        return Path(path)

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        self._client().set_model_version_tag(name, version, key, value)

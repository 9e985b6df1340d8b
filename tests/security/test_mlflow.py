"""MLflow per tenant: a tenant reaches tracking only with its own identity and
sees only its own experiments and models; a job's aggregator gets a credential
for its own experiment alone; names cannot be squatted."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from tests.security.conftest import Tenant, mlflow_as
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mallory_mlflow(mallory: Tenant) -> dict[str, str]:
    issued = mallory.request("POST", "/api/mlflow/credentials")
    assert issued.status_code == 201, issued.text
    return dict(issued.json())


def test_mlflow_refuses_anyone_without_credentials(stack: Stack) -> None:
    import httpx

    answer = httpx.post(
        f"{stack.tracking_uri}/api/2.0/mlflow/experiments/search",
        json={"max_results": 10},
    )
    assert answer.status_code == 401


def test_a_tenant_cannot_see_or_touch_another_tenants_tracking(
    local_project: dict[str, Any], mallory_mlflow: dict[str, str]
) -> None:
    victim = local_project["mlflow"]
    with mlflow_as(mallory_mlflow) as client:
        names = [e.name for e in client.search_experiments()]
        assert all(name.startswith("mallory/") for name in names), names
        models = [m.name for m in client.search_registered_models()]
        assert all(name.startswith("mallory.") for name in models), models
        for attempt in (
            lambda: client.get_experiment(victim["experiment_id"]),
            lambda: client.get_run(victim["run_id"]),
            lambda: client.list_artifacts(victim["run_id"]),
            lambda: client.set_tag(victim["run_id"], "owned", "yes"),
            lambda: client.get_registered_model(victim["model_name"]),
            lambda: client.get_model_version(victim["model_name"], "1"),
            lambda: client.set_model_version_tag(victim["model_name"], "1", "x", "y"),
        ):
            with pytest.raises(MlflowException) as err:
                attempt()
            assert err.value.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED")


def test_a_tenant_reads_its_own_models_with_its_credentials(
    stack: Stack, local_project: dict[str, Any]
) -> None:
    issued = stack.flops("mlflow", "credentials", "--format", "json")
    assert issued.returncode == 0, issued.stderr
    import json

    credentials = json.loads(issued.stdout)
    with mlflow_as(credentials) as client:
        name = local_project["mlflow"]["model_name"]
        assert client.get_model_version_by_alias(name, "champion").version
        run = client.get_run(local_project["mlflow"]["run_id"])
        assert run.data.tags["flops.tenant"] == "local"
        with pytest.raises(MlflowException):  # read, not write
            client.set_tag(run.info.run_id, "x", "y")


def test_a_squatted_experiment_name_is_not_used(
    stack: Stack, digits: str, mallory_mlflow: dict[str, str]
) -> None:
    with mlflow_as(mallory_mlflow) as client:
        squatted = client.create_experiment("local/squatted")
    from tests.helpers import EXAMPLES

    result, project = stack.submit(
        str(EXAMPLES / "mnist-sklearn"), "--rounds", "1", "--data-tag", digits,
        "--name", "squatted",
    )  # fmt: skip
    assert result.returncode == 1
    assert "was created outside FLOps" in project["error"]
    with mlflow_as(mallory_mlflow) as client:
        assert client.search_runs([squatted]) == []

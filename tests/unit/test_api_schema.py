"""The API against its own OpenAPI document: schemathesis generates requests from
it (valid and invalid) and runs every one of its checks on each answer.

The app runs in-process on a real SQLite store in a temporary home, started
once for the module (its lifespan: store, local token, job runner).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from flops_management.api.main import create_app
from flops_management.settings import Settings

load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())

_HOME = Path(tempfile.mkdtemp(prefix="flops-schema-"))
SETTINGS = Settings(
    home=_HOME / "home",
    # Nothing answers here: submissions that pass validation fail in their job,
    # which is not what this test looks at.
    mlflow_tracking_uri="http://127.0.0.1:9",
    max_active_jobs_per_tenant=1000,
)
APP = create_app(SETTINGS)
_CLIENT = TestClient(APP)
_CLIENT.__enter__()  # the lifespan, for the whole module
atexit.register(lambda: (_CLIENT.__exit__(None, None, None), shutil.rmtree(_HOME)))
AUTH = {"Authorization": f"Bearer {SETTINGS.token_file.read_text().strip()}"}

# Two expectations differ from schemathesis' defaults, on purpose:
# - a request valid by the schema may still be refused with 422 by the service's
#   own rules (a limit, an unknown data tag, a repository that is not there);
#   the 422 message names which;
# - no MLflow server answers here, so the routes that need it answer 503.
CONFIG = SchemathesisConfig.from_str(
    """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "503"]

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""
)
schema = schemathesis.openapi.from_asgi(
    "/api/openapi.json", APP, headers=AUTH, config=CONFIG
)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_schema(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=ALL_CHECKS)


def test_the_schema_describes_every_route() -> None:
    paths = APP.openapi()["paths"]
    assert set(paths) >= {
        "/health", "/api/info", "/api/projects", "/api/projects/{project_id}",
        "/api/projects/{project_id}/cancel", "/api/projects/{project_id}/server",
        "/api/projects/{project_id}/events", "/api/data", "/api/data/{tag}",
        "/api/tokens", "/api/mlflow/credentials",
    }  # fmt: skip
    submit = paths["/api/projects"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProjectSubmission"
    }

"""Tenant code runs with nothing of the service's: a hostile DataManager looks for
the admin token, the service's environment, other tenants' data and processes,
and finds none of it; the job still trains."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import EXAMPLES
from tests.security.conftest import (
    GitServer,
    Tenant,
    everything_stored,
    service_secrets,
)
from tests.stack import Stack

pytestmark = pytest.mark.integration

# Everything an actor's environment may hold: what the job needs, nothing else.
ACTOR_VARIABLES = {
    "PATH", "HOME", "TMPDIR", "LANG", "PYTHONNOUSERSITE", "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "FLOPS_REPO_DIR", "FLWR_HOME",
    "FLWR_TELEMETRY_ENABLED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "PIP_CERT", "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK",
    # set inside the process: by bubblewrap, gRPC and MLflow themselves
    "PWD", "GRPC_VERBOSITY", "_MLFLOW_TELEMETRY_SESSION_ID",
}  # fmt: skip

PROBE = """
import json as _json
import os as _os


def _probe() -> None:
    home = {home!r}
    found = {{"uid": _os.getuid(), "env": dict(_os.environ)}}
    for name in ("token", "flops.db", "logs/api.log", "data", "jobs", "envs"):
        path = _os.path.join(home, name)
        try:
            found[name] = sorted(_os.listdir(path)) if _os.path.isdir(path) else (
                open(path, errors="replace").read(200)
            )
        except OSError as err:
            found[name] = type(err).__name__
    environs = {{}}
    for pid in filter(str.isdigit, _os.listdir("/proc")):
        try:
            environs[pid] = open(f"/proc/{{pid}}/environ", "rb").read().decode()
        except OSError:
            pass
    found["proc_environ"] = environs
    if "MLFLOW_TRACKING_PASSWORD" in _os.environ:  # the aggregator's job credential
        import mlflow as _mlflow

        client = _mlflow.MlflowClient({tracking_uri!r})
        found["experiments"] = sorted(e.name for e in client.search_experiments())
        try:
            found["models"] = [m.name for m in client.search_registered_models()]
        except Exception as err:
            found["models"] = type(err).__name__
    print("PROBE " + _json.dumps(found), flush=True)


_probe()
"""


def test_hostile_data_manager_finds_nothing_of_the_service(
    stack: Stack, mallory: Tenant, git_server: GitServer
) -> None:
    original = (EXAMPLES / "mnist-sklearn" / "data_manager.py").read_text()
    url = git_server.publish(
        "hostile",
        EXAMPLES / "mnist-sklearn",
        **{
            "data_manager.py": original
            + PROBE.format(home=str(stack.home), tracking_uri=stack.tracking_uri)
        },
    )
    answer = mallory.submit({"repo": url, "data_tags": ["digits"], "rounds": 1})
    assert answer.status_code == 201, answer.text
    project = mallory.wait(answer.json()["id"])
    assert project["status"] == "succeeded", project["error"]

    probes = [
        json.loads(e["data"]["line"].split("PROBE ", 1)[1])
        for e in mallory.events(project["id"])
        if e["type"] == "actor_log" and "PROBE " in e["data"]["line"]
    ]
    # The aggregator and both learners imported the hostile module.
    assert len(probes) >= 3
    for probe in probes:
        assert probe["uid"] not in (0, os.getuid())
        for name in ("token", "flops.db", "logs/api.log", "data"):
            assert probe[name] in ("FileNotFoundError", "PermissionError"), name
        # Its own job's folder and its own tenant's environment, nothing else.
        assert probe["jobs"] == [project["id"]]
        assert probe["envs"] == ["mallory"]
        assert set(probe["env"]) <= ACTOR_VARIABLES, set(probe["env"]) - ACTOR_VARIABLES
        # Only the sandbox's own processes are visible, none of the service's.
        for environ in probe["proc_environ"].values():
            assert "FLOPS_HOME" not in environ
    # Only the aggregator holds an MLflow credential, for its own experiment only.
    scoped = [probe for probe in probes if "experiments" in probe]
    assert len(scoped) == 1 and scoped[0]["experiments"] == ["mallory/hostile"]
    assert scoped[0]["models"] in ([], "MlflowException", "RestException")
    stored = everything_stored(mallory, project["id"])
    assert not any(secret in stored for secret in service_secrets(stack))

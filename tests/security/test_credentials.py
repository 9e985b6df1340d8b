"""Credentials in a repo URL reach git through its credential helper and are
stored, logged, shown and tagged nowhere: not in the project, its events, the
service's log, the job's logs or MLflow."""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.git_https import serve
from tests.helpers import EXAMPLES, make_repo
from tests.security.conftest import Tenant, everything_stored
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_url_credentials_reach_git_and_nothing_else(
    stack: Stack,
    mallory: Tenant,
    tls: tuple[Path, Path, Path],
    tmp_path: Path,
    mlflow_client: Any,
) -> None:
    cert, key, _ = tls
    root = tmp_path / "served"
    make_repo(tmp_path / "work", EXAMPLES / "mnist-sklearn")
    root.mkdir()
    subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--bare",
            str(tmp_path / "work"),
            str(root / "mnist.git"),
        ],
        check=True,
    )
    secret = f"tok-{secrets.token_hex(12)}"
    with serve(root, cert, key, "alice", secret) as server:
        answer = mallory.submit(
            {"repo": server.url("mnist.git"), "data_tags": ["digits"], "rounds": 1}
        )
        assert answer.status_code == 201, answer.text
        project = mallory.wait(answer.json()["id"])
    assert project["status"] == "succeeded", project["error"]
    # git was given the credential (by its helper), the server saw it...
    wanted = "Basic " + base64.b64encode(f"alice:{secret}".encode()).decode()
    assert wanted in server.authorizations
    # ...and nothing FLOps keeps holds it.
    assert project["source"] == server.url("mnist.git", credentials=False)
    assert secret not in everything_stored(mallory, project["id"])
    job_logs = sorted((stack.home / "jobs" / project["id"]).rglob("*.log"))
    for log in [stack.home / "logs" / "api.log", *job_logs]:
        assert secret not in log.read_text(errors="replace"), log
    run = mlflow_client.get_run(project["mlflow"]["run_id"])
    assert run.data.tags["mlflow.source.name"] == project["source"]
    assert not [v for v in run.data.tags.values() if secret in v]
    assert not [v for v in run.data.params.values() if secret in v]
    version = mlflow_client.get_model_version(
        project["mlflow"]["model_name"], project["mlflow"]["model_version"]
    )
    assert version.tags["flops.source"] == project["source"]


def test_a_wrong_credential_is_a_clear_clone_error(
    mallory: Tenant, tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    cert, key, _ = tls
    (tmp_path / "served").mkdir()
    with serve(tmp_path / "served", cert, key, "alice", "right") as server:
        url = f"https://alice:wrong@127.0.0.1:{server.port}/x.git"
        answer = mallory.submit({"repo": url, "data_tags": ["digits"]})
        project = mallory.wait(answer.json()["id"])
    assert project["status"] == "failed"
    assert "needs credentials FLOps was not given" in project["error"] or (
        "Authentication failed" in project["error"]
    )
    assert "wrong" not in everything_stored(mallory, project["id"])

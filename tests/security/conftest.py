"""An attacker with a tenant token, on the shared real stack.

`mallory` is a tenant (not an admin) with her own token, her own `digits` data
tag and repositories served over git:// by a real `git daemon` on loopback, as a
tenant's repos would be served by any git host.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack, free_port


@dataclass
class Tenant:
    name: str
    token: str
    api: str

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.api}{path}",
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            timeout=120,
            **kwargs,
        )

    def submit(self, body: dict[str, Any]) -> httpx.Response:
        return self.request("POST", "/api/projects", json=body)

    def wait(self, project_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            project = self.request("GET", f"/api/projects/{project_id}").json()
            if project["status"] in {"succeeded", "failed", "cancelled"}:
                return dict(project)
            time.sleep(1)
        raise AssertionError(f"{project_id} did not finish in {timeout}s")

    def events(self, project_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/api/projects/{project_id}/events").json())


@dataclass
class GitServer:
    root: Path
    port: int

    def publish(self, name: str, source: Path | None = None, **files: str) -> str:
        """A repo of `source`'s files and `files`, committed; its git:// URL."""
        make_repo(self.root / name, source, files)
        return f"git://127.0.0.1:{self.port}/{name}"


def new_tenant(stack: Stack, name: str) -> Tenant:
    created = stack.flops("token", "create", "--tenant", name)
    assert created.returncode == 0, created.stderr
    return Tenant(name, created.stdout.strip(), stack.env["FLOPS_API_URL"])


@pytest.fixture(scope="session")
def mallory(stack: Stack, digits_file: Path) -> Tenant:
    tenant = new_tenant(stack, "mallory")
    pushed = tenant.request(
        "PUT",
        "/api/data/digits",
        params={"partitions": 2},
        content=digits_file.read_bytes(),
    )
    assert pushed.status_code == 201, pushed.text
    return tenant


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    root = tmp_path_factory.mktemp("git-served")
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--informative-errors",
            f"--base-path={root}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(root),
        ]
    )
    try:
        yield GitServer(root, port)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.fixture(scope="session")
def example_url(git_server: GitServer) -> str:
    return git_server.publish("mnist-sklearn", EXAMPLES / "mnist-sklearn")


def service_secrets(stack: Stack) -> list[str]:
    """What no tenant may ever see: the admin token, the service's canary."""
    return [
        (stack.home / "token").read_text().strip(),
        stack.env["FLOPS_REGISTRY_PASSWORD"],
    ]


def everything_stored(tenant: Tenant, project_id: str) -> str:
    """The project and all its events as the tenant sees them, as one text."""
    project = tenant.request("GET", f"/api/projects/{project_id}").text
    return project + "\n".join(str(e) for e in tenant.events(project_id))


@contextlib.contextmanager
def mlflow_as(credentials: dict[str, str]) -> Iterator[Any]:
    """An MLflow client that authenticates as `credentials` (its env vars)."""
    import mlflow

    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_TRACKING_USERNAME"] = credentials["username"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials["password"]
    try:
        yield mlflow.MlflowClient(credentials["tracking_uri"])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def local_project(stack: Stack, digits: str) -> dict[str, Any]:
    """A project of the admin's tenant (`local`), trained and registered."""
    result, project = stack.submit(
        str(EXAMPLES / "mnist-sklearn"), "--rounds", "1", "--data-tag", digits,
        "--name", "victim",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + str(project.get("error"))
    return project

"""The real embedded stack for integration tests: `flops up` in a temporary home.

One MLflow server and one management API per test session (MLflow needs 30-100 s
to start on 2 cores); every test talks to them through the `flops` command, as a
user would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES

FLOPS = str(Path(sys.executable).parent / "flops")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    tracking_uri: str
    registry: str

    def flops(
        self, *args: str, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLOPS, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def submit(
        self, *args: str, timeout: float = 900
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """`flops project submit ... --follow --format json`: (process, project)."""
        result = self.flops(
            "project", "submit", *args, "--follow", "--format", "json", timeout=timeout
        )
        start = result.stdout.find("{")
        project = json.loads(result.stdout[start:]) if start >= 0 else {}
        return result, project

    def show(self, project_id: str) -> dict[str, Any]:
        result = self.flops("project", "show", project_id, "--format", "json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def events(self, project_id: str) -> list[dict[str, Any]]:
        import httpx

        token = (self.home / "token").read_text().strip()
        response = httpx.get(
            f"{self.env['FLOPS_API_URL']}/api/projects/{project_id}/events",
            headers={"Authorization": f"Bearer {token}"},
        )
        return list(response.json())

    def wait_for(
        self, project_id: str, predicate: Any, timeout: float = 300
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            project = self.show(project_id)
            if predicate(project):
                return project
            time.sleep(0.5)
        raise AssertionError(
            f"timed out waiting on {project_id}: {self.show(project_id)}"
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("flops-home")
    api_port, mlflow_port, registry_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "FLOPS_HOME": str(home),
        "FLOPS_API_PORT": str(api_port),
        "FLOPS_MLFLOW_PORT": str(mlflow_port),
        "FLOPS_REGISTRY_PORT": str(registry_port),
        "FLOPS_API_URL": f"http://127.0.0.1:{api_port}",
    }
    env.pop("FLOPS_TOKEN", None)
    stack = Stack(
        home=home,
        env=env,
        tracking_uri=f"http://127.0.0.1:{mlflow_port}",
        registry=f"127.0.0.1:{registry_port}",
    )
    up = stack.flops("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield stack
    finally:
        stack.flops("down", timeout=120)


@pytest.fixture(scope="session")
def digits(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The `digits` data tag, two learner partitions, pushed through the CLI."""
    path = tmp_path_factory.mktemp("data") / "digits.parquet"
    made = subprocess.run(
        [sys.executable, str(EXAMPLES / "data" / "make_digits.py"), str(path)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    pushed = stack.flops(
        "data", "push", str(path), "--tag", "digits", "--partitions", "2"
    )
    assert pushed.returncode == 0, pushed.stderr
    return "digits"


@pytest.fixture(scope="session")
def mlflow_client(stack: Stack) -> Any:
    import mlflow

    mlflow.set_tracking_uri(stack.tracking_uri)
    return mlflow.MlflowClient(stack.tracking_uri)

"""The real embedded stack the integration and security tests share.

One MLflow server and one management API per test session (MLflow needs 30-100 s
to start on 2 cores), started by the fixtures in tests/conftest.py; every test
talks to them through the `flops` command or the API, as a user would.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    @classmethod
    def prepare(cls, home: Path, ca_bundle: Path) -> Stack:
        """A stack's settings, not started yet (`flops up`): its home, free
        ports, the CA bundle it trusts, and a canary secret."""
        api_port, mlflow_port, registry_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "FLOPS_HOME": str(home),
            "FLOPS_API_PORT": str(api_port),
            "FLOPS_MLFLOW_PORT": str(mlflow_port),
            "FLOPS_REGISTRY_PORT": str(registry_port),
            "FLOPS_API_URL": f"http://127.0.0.1:{api_port}",
            # A canary in the service's environment: the security tests check
            # that no tenant code and no stored record ever shows it. (Without a
            # username FLOps writes no registry auth file, so the embedded
            # registry is as is.)
            "FLOPS_REGISTRY_PASSWORD": f"canary-{secrets.token_hex(8)}",
            # Git over HTTPS to the tests' own servers (tests/git_https.py).
            "FLOPS_CA_BUNDLE": str(ca_bundle),
        }
        env.pop("FLOPS_TOKEN", None)
        return cls(
            home=home,
            env=env,
            tracking_uri=f"http://127.0.0.1:{mlflow_port}",
            registry=f"127.0.0.1:{registry_port}",
        )

    @property
    def mlflow_port(self) -> int:
        return int(self.env["FLOPS_MLFLOW_PORT"])

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
        found: list[dict[str, Any]] = []
        while True:  # the API answers in pages (of 1000)
            response = httpx.get(
                f"{self.env['FLOPS_API_URL']}/api/projects/{project_id}/events",
                params={"after": found[-1]["seq"] if found else 0},
                headers={"Authorization": f"Bearer {token}"},
            )
            page = list(response.json())
            if not page:
                return found
            found += page

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

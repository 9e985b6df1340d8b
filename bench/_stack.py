"""Shared by the benchmarks: a fresh embedded stack and a user's-eye view of it.

Everything goes through the `flops` command and the REST API, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FLOPS = str(Path(sys.executable).parent / "flops")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_repo(dest: Path, source: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@flops.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@flops.invalid",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "bench"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, env=env)
    return dest


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    api: str
    tracking_uri: str
    up_seconds: float = 0.0

    @classmethod
    def start(cls, extra_env: dict[str, str] | None = None) -> Stack:
        home = Path(tempfile.mkdtemp(prefix="flops-bench-"))
        api_port, mlflow_port, registry_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "FLOPS_HOME": str(home),
            "FLOPS_API_PORT": str(api_port),
            "FLOPS_MLFLOW_PORT": str(mlflow_port),
            "FLOPS_REGISTRY_PORT": str(registry_port),
            "FLOPS_API_URL": f"http://127.0.0.1:{api_port}",
            **(extra_env or {}),
        }
        stack = cls(
            home, env, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{mlflow_port}"
        )
        started = time.monotonic()
        stack.flops("up")
        stack.up_seconds = time.monotonic() - started
        # The benchmarks read MLflow as its admin (MLflow runs its auth app).
        admin = (home / "mlflow" / "admin-password").read_text().strip()
        os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
        os.environ["MLFLOW_TRACKING_PASSWORD"] = admin
        return stack

    def flops(self, *args: str) -> str:
        result = subprocess.run(
            [FLOPS, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"flops {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def stop(self, keep: bool = False) -> None:
        self.flops("down")
        if not keep:
            shutil.rmtree(self.home, ignore_errors=True)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.home / 'token').read_text().strip()}"}

    def push_digits(self, partitions: int = 2) -> None:
        data = self.home / "digits.parquet"
        subprocess.run(
            [sys.executable, str(EXAMPLES / "data" / "make_digits.py"), str(data)],
            check=True,
            capture_output=True,
        )
        self.flops(
            "data",
            "push",
            str(data),
            "--tag",
            "digits",
            "--partitions",
            str(partitions),
        )

    def submit(self, config: dict[str, Any]) -> str:
        response = httpx.post(
            f"{self.api}/api/projects", json=config, headers=self.headers
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def project(self, project_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.api}/api/projects/{project_id}", headers=self.headers
        )
        response.raise_for_status()
        return dict(response.json())

    def events(self, project_id: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.api}/api/projects/{project_id}/events", headers=self.headers
        )
        return list(response.json())

    def wait(self, project_id: str, timeout: float = 1800) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            project = self.project(project_id)
            if project["status"] in {"succeeded", "failed", "cancelled"}:
                if project["status"] != "succeeded":
                    raise RuntimeError(json.dumps(project, indent=2))
                return project
            time.sleep(0.2)
        raise TimeoutError(project_id)


def stage_seconds(project: dict[str, Any]) -> dict[str, float]:
    from datetime import datetime

    out = {}
    for stage in project["stages"]:
        if stage["started_at"] and stage["finished_at"]:
            delta = datetime.fromisoformat(
                stage["finished_at"]
            ) - datetime.fromisoformat(stage["started_at"])
            out[stage["name"]] = delta.total_seconds()
    return out

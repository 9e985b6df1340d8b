"""README's compose commands for Kubernetes and Oakestra reach the service.

Each `flops compose prepare --setting ...` block of README's "Install beside
your orchestrator" is turned into the `.env` that prepare writes, resolved by
podman-compose (`config`) as `up` would, and the management service's
environment is read by FLOps' own settings classes: the backend is enabled
and configured as the README says. (The backends themselves are tested
against their stand-ins; the docker backend's compose install runs for real
in test_compose_install.py.)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flops_management.compose_install import environment, render_env
from flops_management.orchestrators.kubernetes_objects import KubernetesSettings
from flops_management.orchestrators.oakestra import OakestraSettings
from flops_management.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PODMAN_COMPOSE = str(Path(sys.executable).parent / "podman-compose")
PLACEHOLDERS = {"HOST": "flops.example.org", "ROOT": "root.example.org"}


def readme_prepare(section: str) -> tuple[list[str], dict[str, str]]:
    """The --host values and --setting pairs of the section's prepare command."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"### {section}", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```\n(flops compose prepare.*?)```", body, re.S)
    assert block is not None, f"README's {section} has no prepare command"
    command = block.group(1).replace("\\\n", " ")
    for placeholder, value in PLACEHOLDERS.items():
        command = re.sub(rf"\b{placeholder}\b", value, command)
    command = command.replace("...", "s3cret")
    words = shlex.split(command)
    hosts = [words[i + 1] for i, word in enumerate(words) if word == "--host"]
    settings = dict(
        words[i + 1].split("=", 1)
        for i, word in enumerate(words)
        if word == "--setting"
    )
    return hosts, settings


def resolved(tmp_path: Path, settings: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml as `up` would run it with prepare's .env."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    values = environment({}, "localhost/flops/base:test", settings)
    values["FLOPS_SITE_DIGEST"] = "0" * 16
    (tmp_path / ".env").write_text(render_env(values))
    output = subprocess.run(
        [PODMAN_COMPOSE, "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert output.returncode == 0, output.stderr
    config: dict[str, Any] = yaml.safe_load(output.stdout)
    return config


def management_env(config: dict[str, Any]) -> dict[str, str]:
    env = config["services"]["management"]["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items() if value is not None}


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("FLOPS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_readmes_kubernetes_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts, settings = readme_prepare("Kubernetes")
    assert hosts == ["flops.example.org"]
    config = resolved(tmp_path, settings)
    env = management_env(config)
    settings_from(monkeypatch, env)
    service = Settings()
    assert service.profile == "production"
    assert service.orchestrators == ["kubernetes"]
    assert service.registry == "flops.example.org:5001"
    assert service.mlflow_actor_uri == "http://flops.example.org:5000"
    kubernetes = KubernetesSettings()
    assert kubernetes.kubeconfig == Path("/etc/flops/kubeconfig")
    assert kubernetes.data_pvc == "flops-data"
    assert kubernetes.image_pull_secret == "flops-registry"
    volumes = [str(v) for v in config["services"]["management"]["volumes"]]
    assert any(
        v.startswith("/root/.kube/config:/etc/flops/kubeconfig") for v in volumes
    ), volumes
    mlflow = config["services"]["mlflow"]["environment"]
    allowed = mlflow["MLFLOW_ALLOWED_HOSTS"] if isinstance(mlflow, dict) else ""
    assert "flops.example.org:*" in allowed.split(",")


def test_readmes_oakestra_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, settings = readme_prepare("Oakestra")
    env = management_env(resolved(tmp_path, settings))
    settings_from(monkeypatch, env)
    service = Settings()
    assert service.orchestrators == ["oakestra"]
    assert service.placement_clusters == ["edge-a", "edge-b"]
    assert service.mlflow_actor_uri == "http://flops.example.org:5000"
    oakestra = OakestraSettings()
    assert oakestra.url == "http://root.example.org:10000"
    assert oakestra.username == "flops"
    assert oakestra.password is not None
    assert oakestra.password.get_secret_value() == "s3cret"
    assert oakestra.data_volume == "flops-data"


def test_the_default_install_runs_jobs_on_the_hosts_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = management_env(resolved(tmp_path, {}))
    settings_from(monkeypatch, env)
    service = Settings()
    assert service.orchestrators == ["docker"]
    assert service.docker_url == "unix:///run/flops/engine.sock"
    assert service.store_url == "mongodb://127.0.0.1:27017/flops"
    assert service.admin_token is not None
    assert OakestraSettings().url is None

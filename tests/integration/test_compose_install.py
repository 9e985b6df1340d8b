"""The compose install, for real under Podman (podman-compose from PyPI).

docker-compose.yml plus docker-compose.test.yml (this host pulls no public
image: the store is SecantusDB, a real MongoDB wire-protocol server from PyPI,
built on the same base as every other image). The stack's own management
service, MongoDB-compatible store, MLflow on PostgreSQL and TLS registry with
htpasswd come up from a copy of this checkout; mnist-sklearn is submitted
through the published API with the admin token and trains on the docker
orchestrator (the host's Podman service); then the MLflow UI page, the
inference image pulled with credentials, and after `down` and `up` again the
project, its runs and its model are still there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flops_management.compose_install import read_env
from tests.conftest import remove_local_images
from tests.git_https import serve
from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack, free_port

ROOT = Path(__file__).resolve().parents[2]
PODMAN_COMPOSE = str(Path(sys.executable).parent / "podman-compose")
# What the images are built from (`uv pip install .` and images/).
CHECKOUT_PARTS = [
    "flops",
    "flops_utils",
    "management",
    "cli",
    "templates",
    "images",
    "pyproject.toml",
    "README.md",
    "docker-compose.yml",
    "docker-compose.test.yml",
    ".containerignore",
]
SERVICE_IMAGES = [
    f"localhost/flops/compose-{name}:latest"
    for name in ("management", "mlflow", "postgres", "registry", "store-secantusdb")
]
# Podman keeps its own process limit at this (libpod raises nothing above it).
PODMAN_NPROC = 32768


@dataclass
class ComposeStack:
    checkout: Path
    project: str
    env: dict[str, str]
    settings: dict[str, str]
    api: Stack

    def compose(self, *args: str, timeout: float = 1800) -> str:
        result = subprocess.run(
            [
                PODMAN_COMPOSE,
                "-p",
                self.project,
                "-f",
                "docker-compose.yml",
                "-f",
                "docker-compose.test.yml",
                *args,
            ],
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        return output

    def up(self, *args: str) -> None:
        # podman-compose exits 0 when a container does not start: check them.
        self.compose("up", "-d", *args)
        down = self.containers() - self.containers("status=running")
        assert not down, f"not running: {down}\n{self.logs()}"
        self.wait_ready()

    def containers(self, *filters: str) -> set[str]:
        label = f"label=io.podman.compose.project={self.project}"
        args = ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", label]
        for extra in filters:
            args += ["--filter", extra]
        listed = subprocess.run(args, capture_output=True, text=True, check=True)
        return set(listed.stdout.split())

    def logs(self) -> str:
        out = []
        for service in ("mongo", "postgres", "mlflow", "registry", "management"):
            name = f"{self.project}_{service}_1"
            logs = subprocess.run(
                ["podman", "logs", "--tail", "30", name],
                capture_output=True,
                text=True,
            )
            out.append(f"== {service}\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)

    def wait_ready(self, timeout: float = 300) -> None:
        urls = [
            f"{self.api.env['FLOPS_API_URL']}/health",
            f"http://127.0.0.1:{self.settings['MLFLOW_PORT']}/health",
        ]
        deadline = time.monotonic() + timeout
        for url in urls:
            while True:
                try:
                    if httpx.get(url, timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{url} never answered\n" + (
                    self.logs()
                )
                time.sleep(1)

    def mlflow(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"http://127.0.0.1:{self.settings['MLFLOW_PORT']}{path}",
            params=params,
            auth=("admin", self.settings["MLFLOW_ADMIN_PASSWORD"]),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response

    def runs(self, experiment_id: str) -> set[str]:
        response = httpx.post(
            f"http://127.0.0.1:{self.settings['MLFLOW_PORT']}"
            "/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [experiment_id], "max_results": 1000},
            auth=("admin", self.settings["MLFLOW_ADMIN_PASSWORD"]),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return {run["info"]["run_id"] for run in response.json().get("runs", [])}


def copy_checkout(dest: Path) -> Path:
    dest.mkdir()
    for part in CHECKOUT_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, dest / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, dest / part)
    return dest


def podman_limits(socket_pid: int) -> dict[str, str]:
    """The hard limits Podman runs containers under (HOST_NOFILE, HOST_NPROC)."""
    limits = {}
    for line in Path(f"/proc/{socket_pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            limits["HOST_NOFILE"] = line.split()[4]
        if line.startswith("Max processes"):
            limits["HOST_NPROC"] = str(min(int(line.split()[3]), PODMAN_NPROC))
    return limits


@contextmanager
def podman_service(socket: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The host's container engine API, as `systemctl start podman.socket` gives."""
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert time.monotonic() < deadline, "Podman's service did not start"
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def compose_stack(
    stack: Stack,
    tls: tuple[Path, Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComposeStack]:
    work = tmp_path_factory.mktemp("compose")
    checkout = copy_checkout(work / "checkout")
    home = work / "flops-home"
    ports = {
        name: str(free_port())
        for name in ("FLOPS_API_PORT", "MLFLOW_PORT", "REGISTRY_PORT", "MONGO_PORT")
    }
    socket = work / "podman.sock"
    project = f"flopstest{os.getpid()}"
    with podman_service(socket) as service:
        settings = [
            *(f"{name}={port}" for name, port in ports.items()),
            f"FLOPS_HOST_HOME={home}",
            f"CONTAINER_SOCKET={socket}",
        ]
        prepared = subprocess.run(
            [
                str(Path(sys.executable).parent / "flops"),
                "compose",
                "prepare",
                "--checkout",
                str(checkout),
                "--test-store",
                *(arg for item in settings for arg in ("--setting", item)),
            ],
            # The session's home: prepare waits on the session's bootstrap of
            # the base (conftest's prebuild) instead of running its own.
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        values = read_env(checkout / ".env")
        env = {
            **os.environ,
            **podman_limits(service.pid),
            # The test's git server's certificate beside the host's CAs.
            "FLOPS_TEST_CA_BUNDLE": str(tls[2]),
        }
        api = Stack(
            home=work / "cli",
            env={
                **os.environ,
                "FLOPS_HOME": str(work / "cli"),
                "FLOPS_API_URL": f"http://127.0.0.1:{ports['FLOPS_API_PORT']}",
                "FLOPS_TOKEN": values["FLOPS_ADMIN_TOKEN"],
            },
            tracking_uri=f"http://127.0.0.1:{ports['MLFLOW_PORT']}",
            registry=values["FLOPS_REGISTRY"],
        )
        compose = ComposeStack(checkout, project, env, values, api)
        try:
            compose.up("--build")
            yield compose
        finally:
            try:
                compose.compose("down", "-v", timeout=600)
            finally:
                remove_local_images(values["FLOPS_REGISTRY"])
                # The services' images (about 3 GB): the suite's disk peak.
                subprocess.run(
                    ["podman", "rmi", "--ignore", *SERVICE_IMAGES],
                    capture_output=True,
                )
                shutil.rmtree(home, ignore_errors=True)


def test_the_compose_install_trains_serves_and_keeps_its_state(
    compose_stack: ComposeStack, tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    api = compose_stack.api
    data = tmp_path / "digits.parquet"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/data/make_digits.py"), str(data)],
        check=True,
        capture_output=True,
    )
    pushed = api.flops(
        "data", "push", str(data), "--tag", "digits", "--partitions", "2"
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    # The service runs no learner itself: `local` is refused, by name.
    refused, _ = api.submit(
        str(ROOT / "examples/mnist-sklearn"), "--orchestrator", "local"
    )
    assert refused.returncode != 0
    assert "not enabled" in refused.stdout + refused.stderr

    served = tmp_path / "served"
    make_repo(served / "mnist-sklearn", EXAMPLES / "mnist-sklearn")
    subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--bare",
            str(served / "mnist-sklearn"),
            str(served / "mnist-sklearn.git"),
        ],
        check=True,
    )
    config = tmp_path / "serve.toml"
    config.write_text("[post_training]\nbuild_inference_image = true\n")
    cert, key, _ = tls
    with serve(served, cert, key, "alice", "secret") as git_server:
        result, project = api.submit(
            git_server.url("mnist-sklearn.git"),
            "--orchestrator",
            "docker",
            "--rounds",
            "2",
            "--learners",
            "2",
            "--data-tag",
            "digits",
            "--config",
            str(config),
            timeout=1800,
        )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert project["status"] == "succeeded", project
    tracked = project["mlflow"]
    assert tracked["model_version"], tracked
    inference = project["images"]["inference"]["reference"]

    # MLflow's UI: behind its login, served.
    mlflow_url = f"http://127.0.0.1:{compose_stack.settings['MLFLOW_PORT']}/"
    assert httpx.get(mlflow_url, timeout=30).status_code == 401
    assert "<title>MLflow</title>" in compose_stack.mlflow("/").text

    # The inference image, from the registry over TLS, with credentials only.
    certs = (
        compose_stack.checkout
        / ".cache/compose/certs.d"
        / compose_stack.settings["FLOPS_REGISTRY"].split("/")[0]
    )
    anonymous = subprocess.run(
        ["podman", "pull", "--cert-dir", str(certs), inference],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower(), anonymous.stderr
    user = compose_stack.settings["REGISTRY_USERNAME"]
    password = compose_stack.settings["REGISTRY_PASSWORD"]
    pulled = subprocess.run(
        [
            "podman",
            "pull",
            "--cert-dir",
            str(certs),
            "--creds",
            f"{user}:{password}",
            inference,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pulled.returncode == 0, pulled.stderr

    runs_before = compose_stack.runs(tracked["experiment_id"])

    compose_stack.compose("down", timeout=600)
    compose_stack.up()

    again = api.show(project["id"])
    assert again["status"] == "succeeded"
    assert again["mlflow"] == tracked
    runs_after = compose_stack.runs(tracked["experiment_id"])
    assert runs_after == runs_before
    assert len(runs_after) >= 3  # the aggregator's and each learner's
    versions = compose_stack.mlflow(
        "/api/2.0/mlflow/model-versions/search",
        filter=f"name='{tracked['model_name']}'",
    ).json()["model_versions"]
    assert tracked["model_version"] in {v["version"] for v in versions}

"""Fixtures shared by the integration and security tests: one real stack."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import netns
from tests.fixtures.images import make_digit_images
from tests.fixtures.tabular import make_tabular
from tests.git_https import make_certificate
from tests.helpers import EXAMPLES
from tests.stack import Stack


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A certificate for test servers on 127.0.0.1: (cert, key, CA bundle that
    the stack trusts: the system's plus this one)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder)
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = folder / "bundle.pem"
    bundle.write_text(
        (system.read_text() if system.exists() else "") + cert.read_text()
    )
    return cert, key, bundle


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls: tuple[Path, Path, Path],
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("flops-home")
    stack = Stack.prepare(home, tls[2])
    # Learners that join from other machines (network namespaces here) reach
    # the API and their jobs' Fleet fronts at the host's site address.
    site = contextlib.ExitStack()
    modules = {item.path.stem for item in request.session.items}
    # Only a session that holds them makes the host's site link (one name per
    # host, so two sessions at once do not fight over it).
    if modules & SITE_USERS and netns.available() is None:
        address = site.enter_context(netns.site_address())
        stack.env.update({"FLOPS_API_HOST": "0.0.0.0", "FLOPS_FLEET_HOST": address})
    up = stack.flops("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    prebuild = prebuild_base_images(stack, request.session.items)
    try:
        yield stack
    finally:
        if prebuild is not None:
            prebuild.kill()
            prebuild.wait()
        try:
            stack.flops("down", timeout=300)
        finally:
            remove_local_images(stack.registry)
            site.close()


# Modules with devices in network namespaces, which dial the host's site link.
SITE_USERS = {"test_e2e_docker", "test_joined_learners"}
# Platforms whose base image the session's tests will need, by test module.
BASE_USERS = {
    "test_compose_install": ["linux/amd64"],
    "test_e2e_docker": ["linux/amd64"],
    "test_e2e_flower_apps": ["linux/amd64"],
    "test_e2e_inference": ["linux/amd64"],
    "test_e2e_multiarch": ["linux/amd64", "linux/arm64"],
}
PREBUILD = """
import sys
from flops_management.images.parts import ImageParts
from flops_management.settings import Settings
parts = ImageParts(Settings(), lambda line: print(line, flush=True))
for platform in sys.argv[1:]:
    parts.bases.ensure(platform)
"""


def prebuild_base_images(
    stack: Stack, items: list[pytest.Item]
) -> subprocess.Popen[bytes] | None:
    """On a fresh host the base images are bootstrapped once (debootstrap: about
    80 s for amd64, 280 s for arm64 under QEMU); started now, in the background,
    that overlaps the tests before the first image build instead of adding to
    them. The jobs' own `ensure` waits on the same lock, then finds them."""
    modules = {item.path.stem for item in items}
    platforms = sorted(
        {p for module, needs in BASE_USERS.items() if module in modules for p in needs}
    )
    if not platforms:
        return None
    log = (stack.home / "logs").joinpath("prebuild-base-images.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-c", PREBUILD, *platforms],
            env=stack.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def remove_local_images(registry: str) -> None:
    """The images the session built stay in this host's container storage after
    their registry is gone: tens of gigabytes over a few runs on a CI host. By
    name, so that an image also tagged otherwise (the base images' local cache,
    which spares the next session a debootstrap) only loses this tag."""
    # A container still running one (an inference server the session deployed)
    # would keep it: the session is over, so is the container.
    containers = subprocess.run(
        ["podman", "ps", "--all", "--format", "{{.ID}} {{.Image}}"],
        capture_output=True,
        text=True,
    )
    for line in containers.stdout.splitlines():
        container, image = line.split(maxsplit=1)
        if image.startswith(f"{registry}/"):
            subprocess.run(["podman", "rm", "--force", container], capture_output=True)
    # Tagged ones (manifest lists first: they hold their members) by name, then
    # what is left untagged by ID.
    for untagged in (False, True):
        listed = subprocess.run(
            ["podman", "images", "--format", "{{.ID}} {{.Repository}} {{.Tag}}"],
            capture_output=True,
            text=True,
        )
        for line in listed.stdout.splitlines():
            image, repository, tag = line.split()
            if not repository.startswith(f"{registry}/"):
                continue
            if (tag == "<none>") == untagged:
                name = image if untagged else f"{repository}:{tag}"
                subprocess.run(["podman", "rmi", name], capture_output=True)
    subprocess.run(["podman", "image", "prune", "--force"], capture_output=True)


@pytest.fixture(scope="session")
def digits_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mock digits data set as a Parquet file (made offline)."""
    path = tmp_path_factory.mktemp("data") / "digits.parquet"
    made = subprocess.run(
        [sys.executable, str(EXAMPLES / "data" / "make_digits.py"), str(path)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    return path


def push_tag(stack: Stack, path: Path, tag: str) -> str:
    """`flops data push PATH --tag TAG --partitions 2` through the CLI."""
    pushed = stack.flops("data", "push", str(path), "--tag", tag, "--partitions", "2")
    assert pushed.returncode == 0, pushed.stderr
    return tag


@pytest.fixture(scope="session")
def digits(stack: Stack, digits_file: Path) -> str:
    """The `digits` data tag, two learner partitions, pushed through the CLI."""
    return push_tag(stack, digits_file, "digits")


@pytest.fixture(scope="session")
def tabular_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris-like table (tests/fixtures/tabular.py), made offline."""
    return make_tabular(tmp_path_factory.mktemp("tabular") / "iris.parquet")


@pytest.fixture(scope="session")
def tabular(stack: Stack, tabular_file: Path) -> str:
    """The `iris` data tag, two learner partitions."""
    return push_tag(stack, tabular_file, "iris")


@pytest.fixture(scope="session")
def digit_images(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The `digit-images` tag: PNG digits as HF `Image` structs, two partitions."""
    path = make_digit_images(tmp_path_factory.mktemp("images") / "digits.parquet")
    return push_tag(stack, path, "digit-images")


@pytest.fixture(scope="session")
def mlflow_client(stack: Stack) -> Any:
    """MLflow as the service's admin (its password is in FLOPS_HOME, 0600)."""
    import mlflow

    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = (
        (stack.home / "mlflow" / "admin-password").read_text().strip()
    )
    mlflow.set_tracking_uri(stack.tracking_uri)
    return mlflow.MlflowClient(stack.tracking_uri)

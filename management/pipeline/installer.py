"""The installer's command lines and the FLOps packages every environment holds.

Shared by FLOps' runtime environment (runtime_environment.py) and the user's
environments (environment.py): both are virtual environments made by uv (or
pip, when configured) from the interpreter this service runs on, with a copy of
the `flops` and `flops_utils` packages.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path

import flops
import flops_utils
from flops_management.settings import Settings

RUNTIME_PACKAGES = (Path(flops.__file__).parent, Path(flops_utils.__file__).parent)
_COPY_PACKAGE = (
    "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], "
    "dirs_exist_ok=True, ignore=shutil.ignore_patterns('__pycache__'))"
)
_SITE = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def uv_path() -> Path:
    return Path(sys.executable).parent / "uv"


def installer_for(settings: Settings) -> str:
    return "uv" if settings.env_installer == "uv" and uv_path().exists() else "pip"


def runtime_requirements() -> list[str]:
    """The `flops` distribution's own dependencies, without any extra."""
    requires = importlib.metadata.requires("flops") or []
    return sorted(req for req in requires if "extra ==" not in req)


def package_digest() -> str:
    digest = hashlib.sha256()
    for package in RUNTIME_PACKAGES:
        for path in sorted(package.rglob("*.py")):
            digest.update(str(path.relative_to(package.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def install_args(
    installer: str,
    python: Path,
    requirements: list[str],
    find_links: list[str],
    index_url: str | None,
) -> list[str]:
    """The install command for `requirements` into the environment of `python`."""
    if installer == "uv":
        args = [str(uv_path()), "pip", "install", "--python", str(python)]
    else:
        args = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    for link in find_links:
        args += ["--find-links", link]
    if index_url:
        args += ["--index-url", index_url]
    return args + requirements


def compile_args(
    python: Path,
    find_links: list[str],
    index_url: str | None,
    requirements: Path,
    constraints: Path,
) -> list[str]:
    """uv's resolution of `requirements` (a file) under `constraints` (a file:
    bounds on packages the set has, never a reason to add one) for `python`."""
    args = [str(uv_path()), "pip", "compile", str(requirements), "--quiet"]
    args += ["--constraint", str(constraints)]
    args += ["--no-header", "--no-annotate", "--python", str(python)]
    for link in find_links:
        args += ["--find-links", link]
    if index_url:
        args += ["--index-url", index_url]
    return args


def base_python() -> Path:
    """The interpreter environments are made from (this venv's base, resolved:
    the sandbox binds its prefix, not this service's venv)."""
    return Path(sys.executable).resolve()


def create_args(installer: str, target: Path) -> list[str]:
    if installer == "uv":
        return [
            str(uv_path()),
            "venv",
            "--quiet",
            "--python",
            str(base_python()),
            str(target),
        ]
    return [str(base_python()), "-m", "venv", str(target)]


def copy_packages(
    python: Path, packages: tuple[Path, ...], run: Callable[[list[str]], str]
) -> None:
    """Copy the FLOps packages into the environment's site-packages, through
    `run` (the builder's own way of running a step)."""
    site = run([str(python), "-c", _SITE]).strip().splitlines()[-1]
    for package in packages:
        run(
            [
                str(python),
                "-c",
                _COPY_PACKAGE,
                str(package.resolve()),
                f"{site}/{package.name}",
            ]
        )

"""Per-project Python environments for the local orchestrator, cached by hash.

An environment holds the FLOps runtime set (flwr, mlflow-skinny, datasets, ...),
the repo's own requirements and a copy of the `flops`/`flops_utils` packages. Its
key hashes all of that plus the interpreter version, so a second project with the
same dependencies reuses it, and a change to any of them builds a new one.
Built with uv (fast, a cache per tenant), or pip when configured.

Installing runs the tenant's code (package builds, `.pth` files), so every step
runs in the tenant's sandbox, as the tenant, writing only the environment and
the tenant's installer cache. Environments and caches are per tenant: one
tenant's build can never plant code in another's. The service itself only
creates the folders and writes the completion marker beside the environment,
never inside what the tenant's code could have touched.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

import flops
import flops_utils
from flops import subprocesses
from flops.dependencies import DependencySet
from flops.errors import CommandError, EnvironmentBuildError
from flops.model_export import export_requirements
from flops.smoke import RESULT_PREFIX, SmokeResult
from flops_management.file_lock import file_lock
from flops_management.sandbox import (
    INSTALLER_VARIABLES,
    Identity,
    Mounts,
    host_files,
    sandbox_for,
    tenant_env,
)
from flops_management.settings import Settings

RUNTIME_PACKAGES = (Path(flops.__file__).parent, Path(flops_utils.__file__).parent)
_COPY_PACKAGE = (
    "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], "
    "dirs_exist_ok=True, ignore=shutil.ignore_patterns('__pycache__'))"
)


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


def environment_key(deps: DependencySet, installer_options: list[str]) -> str:
    material = {
        "python": sys.version.split()[0],
        "runtime": runtime_requirements(),
        "flops": flops.__version__,
        "flops_code": package_digest(),
        "repo": deps.digest(),
        "installer": installer_options,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[
        :24
    ]


def install_args(
    installer: str,
    python: Path,
    requirements: list[str],
    find_links: list[str],
    index_url: str | None,
) -> list[str]:
    """The install command for `requirements` into the environment of `python`."""
    if installer == "uv":
        args = [str(Path(sys.executable).parent / "uv"), "pip", "install"]
        args += ["--python", str(python)]
    else:
        args = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    for link in find_links:
        args += ["--find-links", link]
    if index_url:
        args += ["--index-url", index_url]
    return args + requirements


def base_python() -> Path:
    """The interpreter environments are made from (this venv's base, resolved:
    the sandbox binds its prefix, not this service's venv)."""
    return Path(sys.executable).resolve()


def create_args(installer: str, target: Path) -> list[str]:
    if installer == "uv":
        return [
            str(Path(sys.executable).parent / "uv"),
            "venv",
            "--quiet",
            "--python",
            str(base_python()),
            str(target),
        ]
    return [str(base_python()), "-m", "venv", str(target)]


class EnvironmentBuilder:
    def __init__(
        self, settings: Settings, tenant: str, identity: Identity | None
    ) -> None:
        self.settings = settings
        self.tenant = tenant
        self.identity = identity
        self.sandbox = sandbox_for(settings)
        self.uv = Path(sys.executable).parent / "uv"
        self.installer = (
            "uv" if settings.env_installer == "uv" and self.uv.exists() else "pip"
        )

    def _options(self) -> list[str]:
        return [
            self.installer,
            *self.settings.find_links,
            self.settings.index_url or "",
        ]

    def path_for(self, deps: DependencySet) -> Path:
        return (
            self.settings.envs_dir
            / self.tenant
            / environment_key(deps, self._options())
        )

    @property
    def cache_dir(self) -> Path:
        return self.settings.home / "cache" / "installer" / self.tenant

    def ensure(
        self, deps: DependencySet, log: Callable[[str], None]
    ) -> tuple[Path, bool]:
        """The environment for `deps`: (path, reused)."""
        target = self.path_for(deps)
        # Beside the environment, in a folder only the service writes.
        marker = target.with_suffix(".json")
        with file_lock(target.with_suffix(".lock")):  # one builder per environment
            if marker.exists():
                log(f"reusing environment {target.name} (same dependencies)")
                marker.touch()
                return target, True
            if target.exists():  # a build that died half-way
                shutil.rmtree(target)
            started = time.monotonic()
            try:
                self._build(target, deps, log)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            marker.write_text(
                json.dumps(
                    {
                        "requirements": list(deps.requirements),
                        "runtime": runtime_requirements(),
                        "flops": flops.__version__,
                        "built_seconds": round(time.monotonic() - started, 1),
                    },
                    indent=2,
                )
            )
            log(f"built environment {target.name} in {time.monotonic() - started:.1f}s")
            return target, False

    def _mounts(self, target: Path) -> Mounts:
        links = [Path(link) for link in self.settings.find_links if Path(link).is_dir()]
        return Mounts(
            read_only=(
                self.uv,
                *links,
                *(package.resolve() for package in RUNTIME_PACKAGES),
                *host_files(os.environ),
            ),
            writable=(target, self.cache_dir),
        )

    def _run(
        self,
        target: Path,
        args: list[str],
        on_line: Callable[[str], None] | None = None,
        bytecode: bool = False,
    ) -> str:
        """A build step in the tenant's sandbox, with the installer's variables."""
        extra = {"UV_CACHE_DIR": str(self.cache_dir), "UV_NO_CONFIG": "1"}
        if not bytecode:
            extra["PYTHONDONTWRITEBYTECODE"] = "1"
        return subprocesses.run(
            self.sandbox.command(args, self._mounts(target), self.identity),
            env=tenant_env(extra, passed=INSTALLER_VARIABLES),
            timeout=self.settings.env_build_timeout,
            on_line=on_line,
        )

    def _build(
        self, target: Path, deps: DependencySet, log: Callable[[str], None]
    ) -> None:
        log(f"creating environment with {self.installer}")
        for folder in (target, self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)
            self.sandbox.give(folder, self.identity)
        self._run(target, create_args(self.installer, target))
        python = target / "bin" / "python"
        requirements = [
            *runtime_requirements(),
            *deps.requirements,
            *export_requirements(deps.requirements),
        ]
        log("installing: " + " ".join(requirements))
        args = install_args(
            self.installer,
            python,
            requirements,
            self.settings.find_links,
            self.settings.index_url,
        )
        try:
            self._run(target, args, on_line=log)
        except CommandError as err:
            raise EnvironmentBuildError(
                f"Installing the repo's dependencies ({deps.source}) failed.\n"
                + "\n".join(err.output.rstrip().splitlines()[-15:]),
                hint="Check the versions in "
                f"{deps.source}: they must install on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} next to "
                "flwr and mlflow-skinny.",
            ) from err
        site = (
            self._run(
                target,
                [
                    str(python),
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                ],
            )
            .strip()
            .splitlines()[-1]
        )
        for package in RUNTIME_PACKAGES:
            source = package.resolve()
            self._run(
                target,
                [
                    str(python),
                    "-c",
                    _COPY_PACKAGE,
                    str(source),
                    f"{site}/{package.name}",
                ],
            )
        started = time.monotonic()
        self._run(target, [str(python), "-m", "flops.executor", "warm"], bytecode=True)
        took = time.monotonic() - started
        log(f"Bytecode cached for the actors' imports in {took:.1f}s")


def smoke_test(
    settings: Settings,
    identity: Identity | None,
    env: Path,
    repo: Path,
    flavor: str | None,
    timeout: float,
) -> SmokeResult:
    """Run flops.smoke in the environment, in the tenant's sandbox (it imports the
    repo's code); EnvironmentBuildError with its reason."""
    args = [str(env / "bin" / "python"), "-m", "flops.smoke", "--repo", str(repo)]
    if flavor:
        args += ["--flavor", flavor]
    mounts = Mounts(read_only=(env, repo), chdir=repo)
    try:
        output = subprocesses.run(
            sandbox_for(settings).command(args, mounts, identity),
            timeout=timeout,
            env=tenant_env({"PYTHONDONTWRITEBYTECODE": "1"}),
        )
    except CommandError as err:
        lines = [
            line
            for line in err.output.splitlines()
            if line.strip() and "Warning" not in line
        ]
        raise EnvironmentBuildError(
            "The repo's code fails in its environment: " + "\n".join(lines[-10:]),
            hint="Most often a dependency missing from the repo's dependency file.",
        ) from err
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                return SmokeResult.model_validate_json(line[len(RESULT_PREFIX) :])
            except ValidationError as err:
                raise EnvironmentBuildError(
                    f"The smoke test's result is malformed: {err}"
                ) from None
    raise EnvironmentBuildError("The smoke test printed no result:\n" + output[-2000:])

"""The user's environments for the local orchestrator, per tenant, cached by hash.

An environment holds the repo's requirements exactly as pinned, what the model
worker needs besides (resolution.py: unpinned, so it bends to the repo), and a
copy of the `flops`/`flops_utils` packages. FLOps' Flower runtime is not in it
(runtime_environment.py), so the repo's pins never meet flwr's. Its key hashes
the requirements, the interpreter, the FLOps code and the resolution rules, so
a second project with the same dependencies reuses it.

Installing runs the tenant's code (package builds, `.pth` files), so every step
runs in the tenant's sandbox, as the tenant, writing only the environment and
the tenant's installer cache. Environments and caches are per tenant: one
tenant's build can never plant code in another's. The service itself only
creates the folders and writes the completion marker beside the environment,
never inside what the tenant's code could have touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import flops
from flops import subprocesses
from flops.config import Flavor
from flops.dependencies import DependencySet
from flops.errors import CommandError, EnvironmentBuildError
from flops.flower_repo import FlowerApp
from flops.smoke import ERROR_PREFIX, RESULT_PREFIX
from flops_management.file_lock import file_lock
from flops_management.pipeline import resolution
from flops_management.pipeline.environment_report import describe_environment
from flops_management.pipeline.installer import (
    RUNTIME_PACKAGES,
    compile_args,
    copy_packages,
    create_args,
    install_args,
    installer_for,
    package_digest,
    uv_path,
)
from flops_management.sandbox import (
    INSTALLER_VARIABLES,
    Identity,
    Mounts,
    host_files,
    sandbox_for,
    tenant_env,
)
from flops_management.settings import Settings

Log = Callable[[str], None]


class SmokeResult(BaseModel):
    """What the smoke test reports; the service reads nothing else from the line
    (it is printed by a process running the tenant's code)."""

    model_config = ConfigDict(extra="ignore")

    # None for a Flower app, whose model has no flavor FLOps knows of.
    flavor: Flavor | None = None
    arrays: int = Field(default=0, ge=0)
    parameter_bytes: int = Field(default=0, ge=0)
    notes: list[str] = Field(default_factory=list, max_length=20)


def environment_key(deps: DependencySet, installer_options: list[str]) -> str:
    material = {
        "python": sys.version.split()[0],
        "flops": flops.__version__,
        "flops_code": package_digest(),
        "repo": deps.digest(),
        "resolution": resolution.RESOLUTION_VERSION,
        "installer": installer_options,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[
        :24
    ]


class EnvironmentBuilder:
    def __init__(
        self, settings: Settings, tenant: str, identity: Identity | None
    ) -> None:
        self.settings = settings
        self.tenant = tenant
        self.identity = identity
        self.sandbox = sandbox_for(settings)
        self.installer = installer_for(settings)

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

    def ensure(self, deps: DependencySet, log: Log) -> tuple[Path, bool]:
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
                pins = self._build(target, deps, log)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            marker.write_text(
                json.dumps(
                    {
                        "requirements": list(deps.requirements),
                        "pins": pins,
                        "flops": flops.__version__,
                        "built_seconds": round(time.monotonic() - started, 1),
                    },
                    indent=2,
                )
            )
            log(f"built environment {target.name} in {time.monotonic() - started:.1f}s")
            return target, False

    def _mounts(self, target: Path, extra: tuple[Path, ...] = ()) -> Mounts:
        links = [Path(link) for link in self.settings.find_links if Path(link).is_dir()]
        return Mounts(
            read_only=(
                uv_path(),
                *links,
                *(package.resolve() for package in RUNTIME_PACKAGES),
                *host_files(os.environ),
                *extra,
            ),
            writable=(target, self.cache_dir),
        )

    def _run(
        self,
        target: Path,
        args: list[str],
        on_line: Log | None = None,
        bytecode: bool = False,
        extra: tuple[Path, ...] = (),
    ) -> str:
        """A build step in the tenant's sandbox, with the installer's variables."""
        env = {"UV_CACHE_DIR": str(self.cache_dir), "UV_NO_CONFIG": "1"}
        if not bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return subprocesses.run(
            self.sandbox.command(args, self._mounts(target, extra), self.identity),
            env=tenant_env(env, passed=INSTALLER_VARIABLES),
            timeout=self.settings.env_build_timeout,
            on_line=on_line,
        )

    def _resolve(self, target: Path, deps: DependencySet, log: Log) -> list[str]:
        python = target / "bin" / "python"
        scratch = Path(tempfile.mkdtemp(dir=self.settings.home / "cache"))
        self.sandbox.share(scratch, self.identity)

        def compile_(requirements: list[str], constraints: list[str]) -> list[str]:
            number = len(list(scratch.iterdir()))
            listing = scratch / f"{number}.in"
            listing.write_text("\n".join(requirements) + "\n")
            bounds = scratch / f"{number}.constraints"
            bounds.write_text("\n".join(constraints) + "\n")
            self.sandbox.share(scratch, self.identity)
            args = compile_args(
                python,
                self.settings.find_links,
                self.settings.index_url,
                listing,
                bounds,
            )
            try:
                output = self._run(target, args, extra=(scratch,))
            except CommandError as err:
                raise resolution.CompileFailed(err.output) from None
            return resolution.compiled_pins(output)

        python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        try:
            result = resolution.resolve_user(deps, compile_, python_version)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for note in result.notes:
            log(f"note: {note}")
        return result.pins

    def _build(self, target: Path, deps: DependencySet, log: Log) -> list[str]:
        log(f"creating environment with {self.installer}")
        for folder in (target, self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)
            self.sandbox.give(folder, self.identity)
        if deps.python and not sys.version.startswith(deps.python.split("=")[-1]):
            log(
                f"note: {deps.source} asks for Python {deps.python}; this host has no "
                f"such interpreter, Python {sys.version.split()[0]} is used"
            )
        self._run(target, create_args(self.installer, target))
        python = target / "bin" / "python"
        pins = self._resolve(target, deps, log)
        log("installing: " + " ".join(pins))
        args = install_args(
            self.installer,
            python,
            pins,
            self.settings.find_links,
            self.settings.index_url,
        )
        try:
            self._run(target, args, on_line=log)
        except CommandError as err:
            raise EnvironmentBuildError(
                f"Installing the repo's dependencies ({deps.source}) failed.\n"
                + "\n".join(err.output.rstrip().splitlines()[-15:]),
                hint=f"Check the versions in {deps.source}.",
            ) from err
        copy_packages(python, RUNTIME_PACKAGES, lambda a: self._run(target, a))
        for line in describe_environment(target, pins, self.settings.find_links):
            log(line)
        started = time.monotonic()
        try:
            self._run(
                target, [str(python), "-m", "flops.worker", "warm"], bytecode=True
            )
        except CommandError as err:
            raise EnvironmentBuildError(
                "The environment installs but does not import: "
                + "\n".join(err.output.rstrip().splitlines()[-8:]),
                hint="A pinned version does not work with another at import time; "
                "the last line names the package.",
            ) from err
        took = time.monotonic() - started
        log(f"Bytecode cached for the actors' imports in {took:.1f}s")
        return pins


def _smoke_failure(output: str) -> str:
    """The reason the smoke test printed, else the last lines of its output."""
    for line in reversed(output.splitlines()):
        if line.startswith(ERROR_PREFIX):
            try:
                return str(json.loads(line[len(ERROR_PREFIX) :]))[:4000]
            except ValueError:
                break
    lines = [line for line in output.splitlines() if line.strip()]
    return "\n".join(lines[-10:])


def smoke_test(
    settings: Settings,
    identity: Identity | None,
    env: Path,
    repo: Path,
    flavor: str | None,
    requirements: list[str],
    timeout: float,
    flower_app: FlowerApp | None = None,
) -> SmokeResult:
    """Run flops.smoke in the user's environment, in the tenant's sandbox (it
    imports the repo's code); EnvironmentBuildError with its reason."""
    args = [str(env / "bin" / "python"), "-m", "flops.smoke", "--repo", str(repo)]
    args += ["--requirements", json.dumps(requirements)]
    if flavor:
        args += ["--flavor", flavor]
    if flower_app is not None:
        args += ["--flower-app", flower_app.serverapp, flower_app.clientapp]
        args.append(flower_app.model_export or "")
    mounts = Mounts(read_only=(env, repo), chdir=repo)
    try:
        output = subprocesses.run(
            sandbox_for(settings).command(args, mounts, identity),
            timeout=timeout,
            env=tenant_env({"PYTHONDONTWRITEBYTECODE": "1"}),
        )
    except CommandError as err:
        raise EnvironmentBuildError(
            "The repo's code fails in its environment: " + _smoke_failure(err.output),
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

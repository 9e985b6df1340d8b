"""FLOps' own runtime environment for the local orchestrator: one per version.

It holds what the Flower side of every actor runs (flwr, mlflow-skinny, the
`flops` package): the SuperLink, SuperNodes, executors and the Flower apps. It
never holds the user's code or the repo's requirements (those live in the
user's environment, which the model worker runs from), so it is the same for
every project and tenant: built once by the service from FLOps' own
requirements, then read-only to every tenant's sandbox.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import flops
from flops import subprocesses
from flops.errors import CommandError, EnvironmentBuildError
from flops_management.file_lock import file_lock
from flops_management.pipeline.installer import (
    RUNTIME_PACKAGES,
    copy_packages,
    create_args,
    install_args,
    installer_for,
    package_digest,
    runtime_requirements,
)
from flops_management.sandbox import INSTALLER_VARIABLES, tenant_env
from flops_management.settings import Settings

Log = Callable[[str], None]


def runtime_key(settings: Settings) -> str:
    material = {
        "python": sys.version.split()[0],
        "runtime": runtime_requirements(),
        "flops": flops.__version__,
        "flops_code": package_digest(),
        "installer": [*settings.find_links, settings.index_url or ""],
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def _readable_by_all(root: Path) -> None:
    """Every tenant's sandbox reads it; none writes it."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        extra = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() or mode & 0o100 else 0)
        path.chmod((mode & 0o7777 & ~0o022) | extra)


class RuntimeEnvironments:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.installer = installer_for(settings)

    def path(self) -> Path:
        return self.settings.home / "runtime" / runtime_key(self.settings)

    def ensure(self, log: Log) -> Path:
        target = self.path()
        marker = target.with_suffix(".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(target.with_suffix(".lock")):
            if marker.exists():
                return target
            shutil.rmtree(target, ignore_errors=True)
            started = time.monotonic()
            try:
                self._build(target, log)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            _readable_by_all(target)
            took = round(time.monotonic() - started, 1)
            marker.write_text(json.dumps({"built_seconds": took}))
            log(f"built FLOps' runtime environment {target.name} in {took}s")
        return target

    def _run(self, args: list[str], log: Log | None = None) -> str:
        env = tenant_env(
            {
                "UV_CACHE_DIR": str(
                    self.settings.home / "cache" / "installer" / "_runtime"
                ),
                "UV_NO_CONFIG": "1",
            },
            passed=INSTALLER_VARIABLES,
        )
        return subprocesses.run(
            args, env=env, timeout=self.settings.env_build_timeout, on_line=log
        )

    def _build(self, target: Path, log: Log) -> None:
        log("building FLOps' runtime environment (once per FLOps version)")
        self._run(create_args(self.installer, target))
        python = target / "bin" / "python"
        try:
            self._run(
                install_args(
                    self.installer,
                    python,
                    runtime_requirements(),
                    self.settings.find_links,
                    self.settings.index_url,
                )
            )
        except CommandError as err:
            raise EnvironmentBuildError(
                "Installing FLOps' runtime (flwr, mlflow-skinny) failed:\n"
                + "\n".join(err.output.rstrip().splitlines()[-15:]),
                hint="The package index must serve FLOps' own requirements.",
            ) from err
        copy_packages(python, RUNTIME_PACKAGES, self._run)
        self._run([str(python), "-m", "flops.executor", "warm"])

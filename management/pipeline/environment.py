"""Per-project Python environments for the local orchestrator, cached by hash.

An environment holds the FLOps runtime set (flwr, mlflow-skinny, datasets, ...),
the repo's own requirements and a copy of the `flops`/`flops_utils` packages. Its
key hashes all of that plus the interpreter version, so a second project with the
same dependencies reuses it, and a change to any of them builds a new one.
Built with uv (fast, shares a cache), or pip when configured.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import flops
import flops_utils
from flops import subprocesses
from flops.dependencies import DependencySet
from flops.errors import CommandError, EnvironmentBuildError
from flops.model_export import export_requirements
from flops_management.settings import Settings

COMPLETE_MARKER = "flops-env.json"
RUNTIME_PACKAGES = (Path(flops.__file__).parent, Path(flops_utils.__file__).parent)


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


def create_args(installer: str, target: Path) -> list[str]:
    if installer == "uv":
        return [
            str(Path(sys.executable).parent / "uv"),
            "venv",
            "--quiet",
            "--python",
            sys.executable,
            str(target),
        ]
    return [sys.executable, "-m", "venv", str(target)]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per environment, across threads and processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EnvironmentBuilder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        uv = Path(sys.executable).parent / "uv"
        self.installer = (
            "uv" if settings.env_installer == "uv" and uv.exists() else "pip"
        )

    def _options(self) -> list[str]:
        return [
            self.installer,
            *self.settings.find_links,
            self.settings.index_url or "",
        ]

    def path_for(self, deps: DependencySet) -> Path:
        return self.settings.envs_dir / environment_key(deps, self._options())

    def ensure(
        self, deps: DependencySet, log: Callable[[str], None]
    ) -> tuple[Path, bool]:
        """The environment for `deps`: (path, reused)."""
        target = self.path_for(deps)
        with _locked(target.with_suffix(".lock")):
            marker = target / COMPLETE_MARKER
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

    def _build(
        self, target: Path, deps: DependencySet, log: Callable[[str], None]
    ) -> None:
        timeout = self.settings.env_build_timeout
        log(f"creating environment with {self.installer}")
        subprocesses.run(create_args(self.installer, target), timeout=timeout)
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
            subprocesses.run(args, timeout=timeout, on_line=log)
        except CommandError as err:
            raise EnvironmentBuildError(
                f"Installing the repo's dependencies ({deps.source}) failed.\n"
                + "\n".join(err.output.rstrip().splitlines()[-15:]),
                hint="Check the versions in "
                f"{deps.source}: they must install on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} next to "
                "flwr and mlflow-skinny.",
            ) from err
        site = subprocesses.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ]
        ).strip()
        for package in RUNTIME_PACKAGES:
            shutil.copytree(
                package,
                Path(site) / package.name,
                ignore=shutil.ignore_patterns("__pycache__"),
                dirs_exist_ok=True,
            )
        started = time.monotonic()
        subprocesses.run(
            [str(python), "-m", "flops.executor", "warm"],
            env=bytecode_env(),
            timeout=timeout,
        )
        took = time.monotonic() - started
        log(f"Bytecode cached for the actors' imports in {took:.1f}s")


def bytecode_env() -> dict[str, str]:
    """This process's environment with bytecode caching on.

    Environments under FLOPS_HOME belong to FLOps; caching compiled modules in
    them halves every actor's start-up on hosts that set PYTHONDONTWRITEBYTECODE.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def smoke_test(
    env: Path, repo: Path, flavor: str | None, timeout: float
) -> dict[str, object]:
    """Run flops.smoke in the environment; EnvironmentBuildError with its reason."""
    from flops.smoke import RESULT_PREFIX

    args = [str(env / "bin" / "python"), "-m", "flops.smoke", "--repo", str(repo)]
    if flavor:
        args += ["--flavor", flavor]
    try:
        output = subprocesses.run(args, cwd=repo, timeout=timeout, env=bytecode_env())
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
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, object] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise EnvironmentBuildError("The smoke test printed no result:\n" + output[-2000:])

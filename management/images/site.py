"""Third-party packages for an image, installed on the build host for its platform.

uv resolves the set for the target platform and Python (`--python-platform`,
`--python-version`), and installs the wheels into a folder that the image COPYs:
no emulation, seconds instead of minutes for arm64. A package without a wheel for
the platform is left out here and named, so the build compiles just those inside
the image (under QEMU for a foreign platform).

The folder is keyed by the hash of the resolved set and reused by every build
that resolves to the same set. It is slimmed (tests, headers, the `uv` binary a
dependency ships) and byte-compiled with hash-checked .pyc, which stay valid
whatever mtimes the copy gives the sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flops import subprocesses
from flops.dependencies import DependencySet
from flops.errors import CommandError, EnvironmentBuildError
from flops_management.images import commands as cmd
from flops_management.pipeline import resolution
from flops_management.sandbox import (
    INSTALLER_VARIABLES,
    Identity,
    Mounts,
    host_files,
    sandbox_for,
    tenant_env,
)
from flops_management.settings import Settings

MARKER = "flops-site.json"
# uv: "Distribution `name==1.0 @ registry+...` can't be installed because it is
# marked as `--no-build` but has no binary distribution"
_NO_WHEEL = re.compile(r"Distribution `([A-Za-z0-9_.\-]+)==([^ `]+)")
# Directories no image needs: test suites and C headers of installed packages.
_PRUNE_DIRS = {"tests", "test", "include", "__pycache__"}
_PRUNE_FILES = ("bin/uv", "bin/uvx")
_PRUNE_SUFFIXES = (".pyx", ".pxd", ".pyi")
_KEEP_TEST_PACKAGES = {"numpy/testing"}  # imported at runtime by some packages

Log = Callable[[str], None]


@dataclass(frozen=True)
class Site:
    path: Path
    platform: str
    pins: list[str]
    # Pinned requirements without a wheel for the platform: compiled in the image.
    compile: list[str] = field(default_factory=list)


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else subprocesses.which("uv")


def compile_args(
    uv: str,
    platform: str,
    python_version: str,
    requirements: list[str],
    find_links: list[str],
    index_url: str | None,
) -> list[str]:
    args = [
        uv,
        "pip",
        "compile",
        "-",
        "--quiet",
        "--no-header",
        "--no-annotate",
        "--python-platform",
        cmd.PLATFORMS[platform][1],
        "--python-version",
        python_version,
    ]
    for link in find_links:
        args += ["--find-links", link]
    if index_url:
        args += ["--index-url", index_url]
    return args


def prune(site: Path, *, keep_tools: bool = False) -> None:
    """Drop what no image needs (`keep_tools`: a service's image keeps the
    `uv` it runs)."""
    drop_files = () if keep_tools else _PRUNE_FILES
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = path.relative_to(site).as_posix()
        if path.is_dir() and not path.is_symlink():
            if (
                path.name in _PRUNE_DIRS
                and "/" in relative
                and not any(relative.startswith(keep) for keep in _KEEP_TEST_PACKAGES)
            ):
                shutil.rmtree(path)
        elif path.suffix in _PRUNE_SUFFIXES or relative in drop_files:
            path.unlink()


class SiteBuilder:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.uv = _uv()

    def compile(
        self,
        platform: str,
        requirements: list[str],
        tenant: str,
        identity: Identity | None,
        constraints: list[str] | None = None,
    ) -> list[str]:
        """The pinned set for `platform` (resolution.CompileFailed if none).

        Resolving may build a source distribution to read its metadata, which runs
        the package's code: it runs in the tenant's sandbox, with the tenant's
        installer cache. (Installing the pins afterwards takes wheels only.)
        """
        args = compile_args(
            self.uv,
            platform,
            self.settings.base_python,
            requirements,
            self.settings.find_links,
            self.settings.index_url,
        )
        sandbox = sandbox_for(self.settings)
        cache = self.settings.home / "cache" / "installer" / tenant
        cache.mkdir(parents=True, exist_ok=True)
        sandbox.give(cache, identity)
        with tempfile.TemporaryDirectory(dir=self.settings.home / "cache") as tmp:
            stdin = Path(tmp) / "requirements.in"
            stdin.write_text("\n".join(requirements) + "\n")
            bounds = Path(tmp) / "constraints.txt"
            bounds.write_text("\n".join(constraints or []) + "\n")
            sandbox.share(Path(tmp), identity)
            args[args.index("-")] = str(stdin)
            args += ["--constraint", str(bounds)]
            links = [Path(p) for p in self.settings.find_links if Path(p).is_dir()]
            mounts = Mounts(
                read_only=(Path(self.uv), Path(tmp), *links, *host_files(os.environ)),
                writable=(cache,),
            )
            try:
                output = subprocesses.run(
                    sandbox.command(args, mounts, identity),
                    env=tenant_env(
                        {"UV_CACHE_DIR": str(cache), "UV_NO_CONFIG": "1"},
                        passed=INSTALLER_VARIABLES,
                    ),
                    timeout=self.settings.build_timeout,
                )
            except CommandError as err:
                raise resolution.CompileFailed(err.output) from None
            return resolution.compiled_pins(output)

    def resolve(
        self,
        platform: str,
        requirements: list[str],
        tenant: str,
        identity: Identity | None,
    ) -> list[str]:
        """FLOps' own sets (the runtime, a model's server): EnvironmentBuildError
        with the resolver's words when they do not resolve."""
        try:
            return self.compile(platform, requirements, tenant, identity)
        except resolution.CompileFailed as err:
            raise EnvironmentBuildError(
                f"The dependencies do not resolve for {platform} "
                f"(Python {self.settings.base_python}):\n"
                + "\n".join(err.output.strip().splitlines()[-10:]),
                hint="Check the versions in the repo's dependency file.",
            ) from None

    def resolve_user(
        self,
        platform: str,
        deps: DependencySet,
        tenant: str,
        identity: Identity | None,
    ) -> list[str]:
        """The user's environment for `platform`: the repo's pins honoured, the
        worker's needs bent to them, every pin at fault named at once."""

        def compile_(requirements: list[str], constraints: list[str]) -> list[str]:
            return self.compile(platform, requirements, tenant, identity, constraints)

        result = resolution.resolve_user(
            deps, compile_, f"{self.settings.base_python} ({platform})"
        )
        for note in result.notes:
            self.log(f"{platform}: note: {note}")
        return result.pins

    def ensure(self, platform: str, pins: list[str]) -> Site:
        key = hashlib.sha256(
            json.dumps([platform, self.settings.base_python, pins]).encode()
        ).hexdigest()[:16]
        target = self.settings.images_dir / "site" / f"{cmd.arch(platform)}-{key}"
        marker = target / MARKER
        if marker.exists():
            compile_list = json.loads(marker.read_text())["compile"]
            self.log(f"{platform}: packages reused ({target.name})")
            self._report(platform, pins, compile_list)
            return Site(target, platform, pins, compile_list)
        shutil.rmtree(target, ignore_errors=True)
        wheels, compile_list = list(pins), []
        while True:
            try:
                self._install(target, platform, wheels)
                break
            except CommandError as err:
                missing = {m.group(1).lower() for m in _NO_WHEEL.finditer(err.output)}
                if not missing:
                    raise EnvironmentBuildError(
                        f"Installing the packages for {platform} failed:\n"
                        + "\n".join(err.output.strip().splitlines()[-10:])
                    ) from err
                compile_list += [p for p in wheels if _name(p) in missing]
                wheels = [p for p in wheels if _name(p) not in missing]
                shutil.rmtree(target, ignore_errors=True)
        self._report(platform, pins, compile_list)
        prune(target)
        compile_bytecode(target, self.settings, self.log)
        marker.write_text(json.dumps({"pins": pins, "compile": compile_list}))
        return Site(target, platform, pins, compile_list)

    def _report(self, platform: str, pins: list[str], compile_list: list[str]) -> None:
        """Say which path each platform's packages take (the build log shows it)."""
        if compile_list:
            self.log(
                f"{platform}: no wheel for {', '.join(compile_list)}: compiled in "
                "the image" + (" under QEMU" if _foreign(platform) else "")
            )
        self.log(
            f"{platform}: {len(pins) - len(compile_list)} packages installed from "
            "wheels on the build host, no emulation"
        )

    def _install(self, target: Path, platform: str, pins: list[str]) -> None:
        args = cmd.site_install_args(
            self.uv,
            target,
            platform,
            self.settings.base_python,
            ["--no-deps", *pins],
            self.settings.find_links,
            self.settings.index_url,
        )
        subprocesses.run(args, timeout=self.settings.build_timeout)


def compile_bytecode(path: Path, settings: Settings, log: Log) -> None:
    """Hash-checked .pyc (valid whatever mtimes a COPY gives the sources),
    written by this host's interpreter: only when it is the base image's Python
    version, whose bytecode is the only kind the image can use."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if host != settings.base_python:
        log(
            f"bytecode not precompiled: this host runs Python {host}, the base "
            f"image {settings.base_python} (actors compile what they import)"
        )
        return
    subprocesses.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(path),
        ],
        check=False,  # a package's deliberately broken test file must not fail us
        timeout=settings.build_timeout,
    )


def _name(pin: str) -> str:
    return re.split(r"[=<>!~; \[]", pin, maxsplit=1)[0].lower().replace("_", "-")


def _foreign(platform: str) -> bool:
    from flops_management.images.base import native_platform

    return platform != native_platform()

"""The FL-actor image of a project: one image, learner and aggregator roles.

Its tag names the commit, the hash of the resolved dependency set (over every
requested platform) and the FLOps runtime, so an identical submission finds its
image in the registry and skips the build. Layers: base, third-party packages
(a folder per resolved set, shared between projects), the FLOps runtime (a
folder per runtime version), the user's code.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import flops
from flops import subprocesses
from flops_management.images import containerfiles
from flops_management.images.base import BaseImages
from flops_management.images.builder import ImageBuilder, PlatformBuild
from flops_management.images.registry import ImageInfo, Registry
from flops_management.images.site import Site, SiteBuilder
from flops_management.pipeline.environment import RUNTIME_PACKAGES, package_digest
from flops_management.settings import Settings

Log = Callable[[str], None]


@dataclass(frozen=True)
class ActorImageRequest:
    tenant: str
    project: str
    commit: str
    source: str
    repo_dir: Path
    requirements: list[str]
    platforms: list[str]


def repository(tenant: str, project: str) -> str:
    """Registry repository names are lowercase [a-z0-9._-] path components."""

    def clean(part: str) -> str:
        return re.sub(r"[^a-z0-9._-]+", "-", part.lower()).strip("-._") or "x"

    return f"flops/{clean(tenant)}/{clean(project)}"


def actor_tag(commit: str, deps_hash: str, runtime_hash: str) -> str:
    return f"{commit[:12]}-d{deps_hash[:12]}-r{runtime_hash[:8]}"


def runtime_hash() -> str:
    return hashlib.sha256(
        f"{flops.__version__}:{package_digest()}".encode()
    ).hexdigest()


def deps_hash(pins: dict[str, list[str]], python_version: str) -> str:
    material = json.dumps({"python": python_version, "pins": pins}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def _compile(path: Path) -> None:
    subprocesses.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            str(path),
        ],
        check=False,
    )


class FlActorImages:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.registry = Registry.from_settings(settings)
        self.sites = SiteBuilder(settings, log)
        self.bases = BaseImages(settings, self.registry, log)
        self.builder = ImageBuilder(settings, self.registry, log)

    @property
    def context(self) -> Path:
        return self.settings.images_dir

    def ensure(self, request: ActorImageRequest) -> tuple[ImageInfo, bool]:
        """The project's image: (info, skipped because the registry had it)."""
        pins = {
            p: self.sites.resolve(p, request.requirements) for p in request.platforms
        }
        tag = actor_tag(
            request.commit,
            deps_hash(pins, self.settings.base_python),
            runtime_hash(),
        )
        reference = self.registry.reference(
            repository(request.tenant, request.project), tag
        )
        existing = self.builder.existing(reference)
        if existing is not None and set(request.platforms) <= set(existing.platforms):
            existing = ImageInfo(reference, existing.digest, existing.platforms)
            self.log(f"{reference} is in the registry: build skipped")
            return existing, True
        runtime = self._runtime()
        repo = self._repo(request, tag)
        try:
            builds = []
            for platform in request.platforms:
                base = self.bases.ensure(platform)
                site = self.sites.ensure(platform, pins[platform])
                builds.append(
                    PlatformBuild(
                        platform,
                        self.render(request, platform, base, site, runtime, repo, tag),
                    )
                )
            return self.builder.build(reference, self.context, builds), False
        finally:
            shutil.rmtree(repo.parent, ignore_errors=True)

    def render(
        self,
        request: ActorImageRequest,
        platform: str,
        base: str,
        site: Site,
        runtime: Path,
        repo: Path,
        tag: str,
    ) -> str:
        def relative(path: Path) -> str:
            return path.relative_to(self.context).as_posix() + "/"

        return containerfiles.render(
            containerfiles.FL_ACTOR,
            base=base,
            platform=platform,
            deps_hash=tag.split("-d", 1)[1].split("-r", 1)[0],
            site=relative(site.path),
            compile_stage=containerfiles.compile_stage(base, site.compile)
            if site.compile
            else "",
            compiled_copy=containerfiles.COMPILED_COPY if site.compile else "",
            flops_version=flops.__version__,
            runtime=relative(runtime),
            commit=request.commit,
            repo=relative(repo),
            title=f"FLOps FL actor: {request.tenant}/{request.project}",
            source=request.source,
        )

    def _runtime(self) -> Path:
        """flops and flops_utils, byte-compiled, in a folder per runtime version."""
        target = self.context / "runtime" / runtime_hash()[:16]
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            for package in RUNTIME_PACKAGES:
                shutil.copytree(
                    package,
                    target / package.name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            _compile(target)
            (target / ".complete").touch()
        return target

    def _repo(self, request: ActorImageRequest, tag: str) -> Path:
        target = self.context / "builds" / f"{request.project}-{tag}" / "repo"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            request.repo_dir,
            target,
            ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc"),
        )
        return target

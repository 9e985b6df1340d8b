"""What every FLOps image is made of, shared by the FL-actor and inference images.

The registry, per-platform base images and package folders, the byte-compiled
FLOps runtime folder, and the builder. Both images use the same base and the
same resolution (uv, per platform, wheels installed on the host), so a model's
inference image reuses the FL-actor image's layers where their sets agree.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import flops
from flops.dependencies import DependencySet
from flops_management.images import containerfiles
from flops_management.images.base import BaseImages
from flops_management.images.builder import ImageBuilder, PlatformBuild
from flops_management.images.registry import ImageInfo, Registry
from flops_management.images.site import Site, SiteBuilder, compile_bytecode
from flops_management.pipeline.installer import RUNTIME_PACKAGES, package_digest
from flops_management.sandbox import Identity
from flops_management.settings import Settings

Log = Callable[[str], None]
# (platform, base reference, shared layer values, copied content) -> Containerfile
Render = Callable[[str, str, dict[str, str], Path], str]
# platform -> package folder of the image ("site", "user-site") -> its pins
Pins = dict[str, dict[str, list[str]]]


def runtime_hash() -> str:
    return hashlib.sha256(
        f"{flops.__version__}:{package_digest()}".encode()
    ).hexdigest()


def deps_hash(pins: Pins, python_version: str) -> str:
    material = json.dumps({"python": python_version, "pins": pins}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


class ImageParts:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.registry = Registry.from_settings(settings)
        self.sites = SiteBuilder(settings, log)
        self.bases = BaseImages(settings, self.registry, log)
        self.builder = ImageBuilder(settings, self.registry, log)

    @property
    def context(self) -> Path:
        """Buildah's context: every COPY source lives under FLOPS_HOME/images."""
        return self.settings.images_dir

    def relative(self, path: Path) -> str:
        return path.relative_to(self.context).as_posix() + "/"

    def resolve(
        self,
        platforms: list[str],
        requirements: list[str],
        tenant: str,
        identity: Identity | None,
    ) -> dict[str, list[str]]:
        return {
            p: self.sites.resolve(p, requirements, tenant, identity) for p in platforms
        }

    def resolve_user(
        self,
        platforms: list[str],
        deps: DependencySet,
        tenant: str,
        identity: Identity | None,
    ) -> dict[str, list[str]]:
        return {
            p: self.sites.resolve_user(p, deps, tenant, identity) for p in platforms
        }

    def existing(self, reference: str, platforms: list[str]) -> ImageInfo | None:
        """The registry's image under `reference` if it covers `platforms`."""
        found = self.builder.existing(reference)
        if found is None or not set(platforms) <= set(found.platforms):
            return None
        self.log(f"{reference} is in the registry: build skipped")
        return ImageInfo(reference, found.digest, found.platforms)

    def platform(
        self, platform: str, pins: dict[str, list[str]]
    ) -> tuple[str, dict[str, Site]]:
        """The base reference and the package folders for one platform."""
        sites = {dest: self.sites.ensure(platform, p) for dest, p in pins.items()}
        return self.bases.ensure(platform), sites

    def runtime(self) -> Path:
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
            compile_bytecode(target, self.settings, self.log)
            (target / ".complete").touch()
        return target

    def site_layers(self, base: str, sites: dict[str, Site]) -> dict[str, str]:
        """The template values for a platform's package folders (`site` gives
        `site` and `compiled_copy`, `user-site` gives `user_site` and
        `user_compiled_copy`) and the compile stage of what lacks a wheel."""
        values: dict[str, str] = {}
        for dest, site in sites.items():
            key = dest.replace("-", "_")
            copy_key = f"{key.removesuffix('site')}compiled_copy"
            values[key] = self.relative(site.path)
            values[copy_key] = (
                containerfiles.compiled_copy(dest) if site.compile else ""
            )
        lists = {dest: site.compile for dest, site in sites.items()}
        values["compile_stage"] = (
            containerfiles.compile_stage(base, lists) if any(lists.values()) else ""
        )
        return values

    def build(
        self,
        reference: str,
        pins: Pins,
        content: Path,
        render: Render,
    ) -> ImageInfo:
        """Copy `content` (a repo, a model) into the context, render and build
        every platform in `pins`, push the manifest list."""
        runtime = self.runtime()
        # One folder per reference: concurrent builds of other images never meet.
        staging = self.context / "builds" / re.sub(r"[^\w.-]", "_", reference)
        shutil.rmtree(staging, ignore_errors=True)
        copied = staging / content.name
        shutil.copytree(
            content,
            copied,
            ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc"),
        )
        try:
            builds = []
            for platform, platform_pins in pins.items():
                base, sites = self.platform(platform, platform_pins)
                layers = {
                    **self.site_layers(base, sites),
                    "runtime": self.relative(runtime),
                }
                builds.append(
                    PlatformBuild(platform, render(platform, base, layers, copied))
                )
            return self.builder.build(reference, self.context, builds)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

"""The FL-actor image of a project: one image, learner and aggregator roles.

Its tag names the commit, the hash of the resolved dependency sets (over every
requested platform) and the FLOps runtime, so an identical submission finds its
image in the registry and skips the build. Layers: base, FLOps' Flower runtime
packages (the same for every project), the user's environment (the repo's pins
and the model worker's needs, resolved apart: a folder per resolved set, shared
between projects), the FLOps runtime code, the user's code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import flops
from flops.dependencies import DependencySet
from flops_management.images import containerfiles
from flops_management.images.parts import (
    ImageParts,
    deps_hash,
    runtime_hash,
)
from flops_management.images.registry import ImageInfo
from flops_management.pipeline.installer import runtime_requirements
from flops_management.sandbox import Identity
from flops_management.settings import Settings

Log = Callable[[str], None]


@dataclass(frozen=True)
class ActorImageRequest:
    tenant: str
    project: str
    commit: str
    source: str
    repo_dir: Path
    dependencies: DependencySet
    platforms: list[str]
    identity: Identity | None = None


def repository(tenant: str, project: str) -> str:
    """Registry repository names are lowercase [a-z0-9._-] path components."""

    def clean(part: str) -> str:
        return re.sub(r"[^a-z0-9._-]+", "-", part.lower()).strip("-._") or "x"

    return f"flops/{clean(tenant)}/{clean(project)}"


def actor_tag(commit: str, deps_hash: str, runtime_hash: str) -> str:
    return f"{commit[:12]}-d{deps_hash[:12]}-r{runtime_hash[:8]}"


class FlActorImages:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.parts = ImageParts(settings, log)

    def ensure(self, request: ActorImageRequest) -> tuple[ImageInfo, bool]:
        """The project's image: (info, skipped because the registry had it)."""
        parts = self.parts
        runtime = parts.resolve(
            request.platforms, runtime_requirements(), request.tenant, request.identity
        )
        user = parts.resolve_user(
            request.platforms, request.dependencies, request.tenant, request.identity
        )
        pins = {
            p: {"site": runtime[p], "user-site": user[p]} for p in request.platforms
        }
        tag = actor_tag(
            request.commit,
            deps_hash(pins, self.settings.base_python),
            runtime_hash(),
        )
        reference = parts.registry.reference(
            repository(request.tenant, request.project), tag
        )
        existing = parts.existing(reference, request.platforms)
        if existing is not None:
            return existing, True

        def render(platform: str, base: str, layers: dict[str, str], repo: Path) -> str:
            return containerfiles.render(
                containerfiles.FL_ACTOR,
                **layers,
                base=base,
                platform=platform,
                deps_hash=tag.split("-d", 1)[1].split("-r", 1)[0],
                flops_version=flops.__version__,
                commit=request.commit,
                repo=parts.relative(repo),
                title=f"FLOps FL actor: {request.tenant}/{request.project}",
                source=request.source,
            )

        return parts.build(reference, pins, request.repo_dir, render), False

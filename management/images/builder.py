"""Multi-platform image builds with Buildah, pushed as one manifest list.

`ImageBuilder.build(request)` renders a Containerfile per platform, builds each
with `buildah build --layers` (so unchanged layers are reused, and the push skips
blobs the registry has), gathers them into a manifest list and pushes it. When
the registry already has the requested tag the build is skipped. Every line of
Buildah's output goes to `log`; a failure names the failing step and the tail.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flops import subprocesses
from flops.errors import CommandError, FlopsError
from flops_management.images import commands as cmd
from flops_management.images.registry import ImageInfo, Registry
from flops_management.settings import Settings

_STEP = re.compile(r"^(\[\w+\] )?STEP \d+/\d+: .*")
TIMEOUT_EXIT = 124

Log = Callable[[str], None]


class BuildError(FlopsError):
    """A build step failed or timed out."""


@dataclass(frozen=True)
class PlatformBuild:
    platform: str
    containerfile: str  # rendered text


class ImageBuilder:
    def __init__(self, settings: Settings, registry: Registry, log: Log) -> None:
        self.settings = settings
        self.registry = registry
        self.log = log

    def existing(self, reference: str) -> ImageInfo | None:
        return self.registry.find(reference)

    def build(
        self, reference: str, context: Path, builds: list[PlatformBuild]
    ) -> ImageInfo:
        """Build one image per platform under `context`, push the manifest list."""
        workdir = context / ".flops-build" / re.sub(r"[^\w.-]", "_", reference)
        workdir.mkdir(parents=True, exist_ok=True)
        images = []
        try:
            for build in builds:
                arch = cmd.arch(build.platform)
                containerfile = workdir / f"Containerfile.{arch}"
                containerfile.write_text(build.containerfile)
                local = f"{reference}-{arch}"
                started = time.monotonic()
                self.log(f"{build.platform}: building {local}")
                self._run_build(containerfile, context, local, build.platform)
                took = time.monotonic() - started
                self.log(f"{build.platform}: built in {took:.1f}s")
                images.append((local, build.platform))
            return self._push_list(reference, images, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_build(
        self, containerfile: Path, context: Path, tag: str, platform: str
    ) -> None:
        timeout = int(self.settings.build_timeout)
        args = cmd.build_args(
            containerfile,
            context,
            tag,
            platform,
            ca_bundle=self.settings.ca_bundle,
            timeout_s=timeout,
        )
        prefix = f"{platform}: "
        try:
            subprocesses.run(
                args,
                timeout=timeout + 30,
                on_line=lambda line: self.log(prefix + line) if line.strip() else None,
            )
        except CommandError as err:
            raise build_failure(platform, err, timeout) from err

    def _push_list(
        self, reference: str, images: list[tuple[str, str]], workdir: Path
    ) -> ImageInfo:
        subprocesses.run(cmd.manifest_rm_args(reference), check=False)
        subprocesses.run(cmd.manifest_create_args(reference))
        for local, platform in images:
            subprocesses.run(
                cmd.manifest_add_args(
                    reference, f"containers-storage:{local}", platform
                )
            )
        digest_file = workdir / "digest"
        started = time.monotonic()
        try:
            subprocesses.run(
                cmd.manifest_push_args(
                    reference, reference, self.registry.transport_args(), digest_file
                ),
                timeout=self.settings.build_timeout,
            )
        except CommandError as err:
            raise BuildError(
                f"Pushing {reference} failed: "
                + "\n".join(err.output.strip().splitlines()[-5:]),
                hint="Is the registry running and writable (`flops status`, "
                "FLOPS_REGISTRY and its credentials)?",
            ) from err
        self.log(f"pushed {reference} in {time.monotonic() - started:.1f}s")
        return ImageInfo(
            reference,
            digest_file.read_text().strip(),
            [platform for _, platform in images],
        )


def build_failure(platform: str, err: CommandError, timeout: int) -> BuildError:
    """The failing step and the last lines of its output, from Buildah's log."""
    lines = err.output.rstrip().splitlines()
    steps = [i for i, line in enumerate(lines) if _STEP.match(line)]
    step = lines[steps[-1]] if steps else "(before the first step)"
    after = lines[steps[-1] + 1 :] if steps else lines
    tail = "\n".join(after[-20:])
    if err.returncode in (TIMEOUT_EXIT, None):
        return BuildError(
            f"The {platform} build timed out after {timeout}s at {step}",
            hint="Raise FLOPS_BUILD_TIMEOUT, or trim the repo's dependencies.",
        )
    return BuildError(
        f"The {platform} build failed at {step}\n{tail}",
        hint="The step's output above says why.",
    )

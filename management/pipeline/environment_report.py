"""What a build log says about an environment once it is installed.

Heavy choices are easy to miss in a list of pins: which torch build was chosen
(a CUDA build drags in gigabytes of `nvidia-*` libraries), how large the
environment is, and which of the host's local wheels (PIP_FIND_LINKS, say a CPU
torch) a repo's pin passed over for another version from the index.
"""

from __future__ import annotations

import os
from pathlib import Path

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)

from flops_management.pipeline.resolution import versions


def folder_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GB"


def local_wheels(find_links: list[str]) -> dict[str, list[str]]:
    """The host's wheels by project name: {name: [version, ...]}."""
    found: dict[str, list[str]] = {}
    for link in find_links:
        folder = Path(link)
        if not folder.is_dir():
            continue
        for wheel in folder.glob("*.whl"):
            try:
                name, version, _, _ = parse_wheel_filename(wheel.name)
            except InvalidWheelFilename:
                continue
            found.setdefault(canonicalize_name(name), []).append(str(version))
    return found


def torch_build(pins: list[str]) -> str | None:
    found = versions(pins)
    torch = found.get("torch")
    if torch is None:
        return None
    cuda = sorted(name for name in found if name.startswith("nvidia-"))
    if cuda:
        return (
            f"torch {torch}: CUDA build ({len(cuda)} nvidia-* packages: "
            f"{', '.join(cuda[:3])}{', ...' if len(cuda) > 3 else ''})"
        )
    kind = "CPU build" if torch.local == "cpu" else "build without CUDA packages"
    return f"torch {torch}: {kind}"


def bypassed_wheels(pins: list[str], find_links: list[str]) -> list[str]:
    found = versions(pins)
    notes = []
    for name, wheel_versions in sorted(local_wheels(find_links).items()):
        chosen = found.get(name)
        if chosen is not None and str(chosen) not in wheel_versions:
            notes.append(
                f"{name}=={chosen} is pinned: the host's local wheel "
                f"{name} {', '.join(wheel_versions)} is not used, the index's "
                "build is installed instead"
            )
    return notes


def describe_environment(
    target: Path, pins: list[str], find_links: list[str]
) -> list[str]:
    lines = []
    build = torch_build(pins)
    if build:
        lines.append(build)
    lines += [f"note: {note}" for note in bypassed_wheels(pins, find_links)]
    lines.append(
        f"environment size: {human_size(folder_bytes(target))} ({len(pins)} packages)"
    )
    return lines

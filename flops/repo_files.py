"""Reading a tenant's repository with its checkout as a root that cannot be escaped.

A repo is untrusted input: a file in it may be a symlink to the service's own
secrets, a `-r ../../x` may point out of it, a file may be gigabytes. Every read
of repo content goes through `RepoRoot`, which resolves the path, refuses one
that lands outside the root, opens the final component without following a
symlink, and caps the size.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flops.errors import FlopsError

# Dependency files, flops.toml and source files; anything larger is not one.
MAX_FILE_BYTES = 4 * 1024 * 1024


class RepoPathError(FlopsError):
    """A path in the repo leaves it, is a symlink out of it, or is not readable."""

    http_status = 422


def relative_path_problem(relative: str) -> str | None:
    """Why a repo-relative path (a subdirectory, an include) is unsafe, or None."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative:
        return "must be a relative path inside the repository"
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if any(part == ".." for part in parts):
        return "must not contain '..'"
    return None


@dataclass(frozen=True)
class RepoRoot:
    """The checkout (or a folder of it) that repo paths are read beneath."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.resolve())

    def path(self, relative: str | Path) -> Path:
        """The absolute path of `relative`, which must stay beneath the root."""
        candidate = self.root / relative
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as err:  # a symlink loop
            raise RepoPathError(f"{relative}: cannot be resolved ({err})") from None
        if not resolved.is_relative_to(self.root):
            raise RepoPathError(
                f"{relative}: leads out of the repository (to {resolved})",
                hint="Keep every file the repo uses inside it; symlinks and '..' "
                "that leave the checkout are refused.",
            )
        return resolved

    def is_file(self, relative: str | Path) -> bool:
        try:
            return self.path(relative).is_file()
        except RepoPathError:
            return False

    def read_bytes(self, relative: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
        path = self.path(relative)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            raise RepoPathError(
                f"{relative}: cannot be read ({err.strerror})"
            ) from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise RepoPathError(f"{relative}: is not a regular file")
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise RepoPathError(
                f"{relative}: is larger than {limit // (1024 * 1024)} MiB, which no "
                "dependency, config or source file of an ML repo should be"
            )
        return data

    def read_text(self, relative: str | Path, limit: int = MAX_FILE_BYTES) -> str:
        try:
            return self.read_bytes(relative, limit).decode("utf-8")
        except UnicodeDecodeError:
            raise RepoPathError(f"{relative}: is not UTF-8 text") from None

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()


def escaping_symlinks(root: Path) -> list[str]:
    """Every symlink under `root` whose target is outside it: 'path -> target'.

    Git checks symlinks out as they are committed; this walks the checkout (not
    following them) so each one that leaves it can be named before any of the
    repo's content is read.
    """
    top = root.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        if ".git" in dirnames and Path(dirpath) == top:
            dirnames.remove(".git")
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            target = path.readlink()
            try:
                inside = path.resolve().is_relative_to(top)
            except (OSError, RuntimeError):
                inside = False  # a loop: refused like an escape
            if not inside:
                found.append(f"{path.relative_to(top).as_posix()} -> {target}")
    return sorted(found)

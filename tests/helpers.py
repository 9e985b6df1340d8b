"""Shared helpers for tests: real git repos in temporary directories."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "FLOps Tests",
    "GIT_AUTHOR_EMAIL": "tests@flops.invalid",
    "GIT_COMMITTER_NAME": "FLOps Tests",
    "GIT_COMMITTER_EMAIL": "tests@flops.invalid",
}


def git(repo: Path, *args: str) -> str:
    import os

    return subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


def make_repo(
    dest: Path, source: Path | None = None, files: dict[str, str] | None = None
) -> Path:
    """A real git repo at `dest` with `source`'s files and/or `files`, committed."""
    dest.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copytree(
            source,
            dest,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    for name, text in (files or {}).items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "initial")
    return dest

"""Fetching the ML repo: a shallow clone, the ref resolved to a commit SHA.

Git's own wording of a failure ("fatal: repository '...' not found") is kept in
the error, preceded by one sentence saying what it means for the user.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from flops.errors import SourceError

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
CLONE_TIMEOUT_S = 600

_GIT_FAILURES = (
    ("could not resolve host", "The host in the repository URL does not resolve."),
    ("not found", "The repository does not exist (or is private)."),
    ("does not appear to be a git repository", "The location is not a git repository."),
    ("not a git repository", "The location is not a git repository."),
    ("authentication failed", "The repository needs credentials FLOps was not given."),
    (
        "could not read username",
        "The repository needs credentials FLOps was not given.",
    ),
    ("connection refused", "The git server refused the connection."),
    ("timed out", "The git server did not answer in time."),
)


def is_url(source: str) -> bool:
    return "://" in source or bool(_SCP_LIKE.match(source))


def normalise(source: str, base: Path | None = None) -> str:
    """URLs as given; local paths made absolute (the service has its own cwd)."""
    source = source.strip()
    if not source:
        raise SourceError("No repository given.")
    if is_url(source):
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve())


def _explain(stderr: str) -> str:
    lowered = stderr.lower()
    for needle, meaning in _GIT_FAILURES:
        if needle in lowered:
            return meaning
    return "git could not fetch the repository."


def split_subdirectory(source: str) -> tuple[str, str]:
    """`URL#subdirectory=a/b` -> (URL, "a/b"), as pip spells it."""
    url, _, fragment = source.partition("#")
    for part in fragment.split("&"):
        key, _, value = part.partition("=")
        if key == "subdirectory" and value:
            return url, value.strip("/")
    return url, ""


def _local_checkout(source: str) -> tuple[str, str] | None:
    """For a local path: (path of the enclosing git repo, subdirectory in it)."""
    import git

    if is_url(source) and not source.startswith("file://"):
        return None
    path = Path(source.removeprefix("file://"))
    if not path.exists():
        raise SourceError(f"Repository path {path} does not exist.")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise SourceError(
            f"{path} is not in a git repository.",
            hint="Run `git init && git add -A && git commit -m init` there, "
            "or submit a git URL.",
        ) from None
    top = Path(repo.working_tree_dir or repo.git_dir).resolve()
    subdir = path.resolve().relative_to(top).as_posix()
    return str(top), "" if subdir == "." else subdir


def clone(
    source: str, ref: str | None, dest: Path, log: Callable[[str], None]
) -> tuple[str, str]:
    """Clone `source` at `ref` into `dest`; return (commit SHA, subdirectory).

    A local path inside a repo clones the whole repo and names the subdirectory,
    so `flops project submit ./examples/mnist-sklearn` works from a checkout.
    """
    import git

    source, subdir = split_subdirectory(source)
    local = _local_checkout(source)
    if local is not None:
        source, local_subdir = local
        subdir = subdir or local_subdir
        if git.Repo(source).is_dirty(untracked_files=True):
            log(
                f"note: {source} has uncommitted changes; only committed files are used"
            )
    if dest.exists():
        shutil.rmtree(dest)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never hang on a prompt
    options = {"env": env, "kill_after_timeout": CLONE_TIMEOUT_S}
    try:
        try:
            repo = git.Repo.clone_from(
                source, dest, depth=1, branch=ref, single_branch=True, **options
            )
        except git.GitCommandError as err:
            if ref is None or "remote branch" not in str(err.stderr).lower():
                raise
            # Not a branch or tag: a commit SHA needs the history to find it.
            log(f"'{ref}' is not a branch or tag; fetching history to find the commit")
            shutil.rmtree(dest, ignore_errors=True)
            repo = git.Repo.clone_from(source, dest, **options)
            repo.git.checkout(ref)
    except git.GitCommandError as err:
        detail = str(err.stderr or err).strip().replace("stderr: ", "")
        what = f"{source}" + (f" at '{ref}'" if ref else "")
        if ref and "did not match" in detail:
            raise SourceError(
                f"Ref '{ref}' does not exist in {source}.\n{detail}"
            ) from err
        raise SourceError(
            f"Could not clone {what}: {_explain(detail)}\n{detail}"
        ) from err
    sha: str = repo.head.commit.hexsha
    log(f"cloned {source}" + (f" ({ref})" if ref else "") + f" at {sha}")
    if subdir:
        if not (dest / subdir).is_dir():
            raise SourceError(f"{subdir} does not exist in {source} at {sha[:12]}.")
        log(f"using subdirectory {subdir}")
    return sha, subdir

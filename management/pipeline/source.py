"""Fetching the ML repo: a shallow clone, the ref resolved to a commit SHA.

Git runs through the one subprocess helper with the argument lists and the
allowlisted environment of `git_commands`. Git's own wording of a failure
("fatal: repository '...' not found") is kept in the error, preceded by one
sentence saying what it means for the user. The checkout is then checked for
symlinks that leave it, and the subdirectory must stay inside it, before any of
its content is read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from flops import subprocesses
from flops.config import ref_problem
from flops.errors import CommandError, SourceError
from flops.repo_files import RepoPathError, RepoRoot, escaping_symlinks
from flops_management.pipeline import git_commands as cmd
from flops_management.pipeline.repo_url import RepoCredentials, RepoSource

CLONE_TIMEOUT_S = 600
MAX_GIT_OUTPUT = 4000

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


def _explain(output: str) -> str:
    lowered = output.lower()
    for needle, meaning in _GIT_FAILURES:
        if needle in lowered:
            return meaning
    return "git could not fetch the repository."


def _git() -> str:
    return subprocesses.which("git", hint="Install git (`make system`).")


def _tail(output: str) -> str:
    text = output.strip()
    return text if len(text) <= MAX_GIT_OUTPUT else "..." + text[-MAX_GIT_OUTPUT:]


@contextlib.contextmanager
def _git_home(
    url: str, credentials: RepoCredentials | None
) -> Iterator[tuple[Path, Path | None]]:
    """An empty HOME for git and, with credentials, a 0600 credential-store file
    in it; both removed when the clone is done."""
    with tempfile.TemporaryDirectory(prefix="flops-git-") as home:
        store = None
        if credentials is not None:
            store = Path(home) / "credentials"
            fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(
                    cmd.credential_line(url, credentials.username, credentials.password)
                )
        yield Path(home), store


def _local_checkout(path: Path, env: dict[str, str]) -> tuple[Path, str]:
    """For a local path: (the enclosing repo's top folder, subdirectory in it)."""
    if not path.exists():
        raise SourceError(f"Repository path {path} does not exist.")
    try:
        top = subprocesses.run(cmd.toplevel_args(_git(), path), env=env).strip()
    except CommandError:
        raise SourceError(
            f"{path} is not in a git repository.",
            hint="Run `git init && git add -A && git commit -m init` there, "
            "or submit a git URL.",
        ) from None
    root = Path(top).resolve()
    subdir = path.resolve().relative_to(root).as_posix()
    return root, "" if subdir == "." else subdir


def _failure(err: CommandError, what: str, ref: str | None) -> SourceError:
    """The user's reading of a failed git command (git's own words included)."""
    detail = _tail(err.output)
    if err.returncode is None:
        return SourceError(
            f"Could not clone {what}: git did not finish in {CLONE_TIMEOUT_S}s."
        )
    if ref and ("did not match" in detail or "not found in upstream" in detail):
        return SourceError(f"Ref '{ref}' does not exist in {what}.\n{detail}")
    return SourceError(f"Could not clone {what}: {_explain(detail)}\n{detail}")


def _fetch(
    url: str,
    ref: str | None,
    dest: Path,
    env: dict[str, str],
    credential_file: Path | None,
    what: str,
    log: Callable[[str], None],
) -> None:
    git = _git()
    try:
        subprocesses.run(
            cmd.clone_args(
                git, url, dest, ref, shallow=True, credential_file=credential_file
            ),
            env=env,
            timeout=CLONE_TIMEOUT_S,
        )
        return
    except CommandError as err:
        if ref is None or "remote branch" not in err.output.lower():
            raise _failure(err, what, ref) from None
    # Not a branch or tag: a commit SHA needs the history to find it.
    log(f"'{ref}' is not a branch or tag; fetching history to find the commit")
    shutil.rmtree(dest, ignore_errors=True)
    for args in (
        cmd.clone_args(
            git, url, dest, None, shallow=False, credential_file=credential_file
        ),
        cmd.checkout_args(git, dest, ref),
    ):
        try:
            subprocesses.run(args, env=env, timeout=CLONE_TIMEOUT_S)
        except CommandError as err:
            raise _failure(err, what, ref) from None


def clone(
    source: RepoSource,
    ref: str | None,
    dest: Path,
    log: Callable[[str], None],
    *,
    ca_bundle: Path | None = None,
) -> tuple[str, str]:
    """Clone `source` at `ref` into `dest`; return (commit SHA, subdirectory).

    A local path inside a repo clones the whole repo and names the subdirectory,
    so `flops project submit ./examples/mnist-sklearn` works from a checkout.
    """
    if ref is not None and (problem := ref_problem(ref)) is not None:
        raise SourceError(f"ref {ref!r} {problem}.")  # checked at the edge too
    subdir = source.subdirectory
    url = source.location
    if dest.exists():
        shutil.rmtree(dest)
    with _git_home(url, source.credentials) as (home, credential_file):
        env = cmd.git_env(home, local=source.local, ca_bundle=ca_bundle)
        if source.local:
            top, local_subdir = _local_checkout(Path(url), env)
            subdir = subdir or local_subdir
            url = top.as_uri()  # file://: a real (shallow) clone, not hard links
            if subprocesses.run(cmd.dirty_args(_git(), top), env=env).strip():
                log(f"note: {top} has uncommitted changes; only committed files count")
        what = source.location + (f" at '{ref}'" if ref else "")
        _fetch(url, ref, dest, env, credential_file, what, log)
        sha = subprocesses.run(cmd.head_args(_git(), dest), env=env).strip()
    log(f"cloned {source.location}" + (f" ({ref})" if ref else "") + f" at {sha}")
    check_checkout(dest)
    if subdir:
        try:
            folder = RepoRoot(dest).path(subdir)
        except RepoPathError as err:
            raise SourceError(f"subdirectory {err.message}") from None
        if not folder.is_dir():
            raise SourceError(
                f"{subdir} does not exist in {source.location} at {sha[:12]}."
            )
        log(f"using subdirectory {subdir}")
    return sha, subdir


def check_checkout(checkout: Path) -> None:
    """SourceError naming every symlink that leads out of the checkout."""
    escaping = escaping_symlinks(checkout)
    if escaping:
        raise SourceError(
            "The repository has symlinks that lead out of it:\n"
            + "\n".join(f"- {link}" for link in escaping),
            hint="Commit the files themselves; FLOps never follows a link out of "
            "a repository.",
        )

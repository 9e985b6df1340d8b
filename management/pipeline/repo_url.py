"""What a submission names as its repository, validated and stripped of secrets.

`parse()` turns the `repo` a tenant sent into a `RepoSource`: the location
without credentials (what is stored, logged, shown and tagged), the
subdirectory (which must stay inside the checkout), and the credentials apart,
which only ever reach git through a credential helper. Anything git could read
as an option, a transport helper (`ext::`) or a file of the service is refused
here, before it is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from flops.errors import SourceError
from flops.repo_files import relative_path_problem

MAX_SOURCE_LENGTH = 2048
REMOTE_SCHEMES = ("https", "http", "git")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
_TRANSPORT_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")
SSH_HINT = (
    "FLOps holds no ssh key for tenants' repositories; use the https URL (for a "
    "private repo, with a token: https://TOKEN@host/team/repo.git)."
)


@dataclass(frozen=True)
class RepoCredentials:
    """What was in a URL's user-info; never stored, logged or shown."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return "RepoCredentials(***)"


@dataclass(frozen=True)
class RepoSource:
    # A URL without user-info, or an absolute path on the service's host.
    location: str
    subdirectory: str = ""
    local: bool = False
    credentials: RepoCredentials | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """What is stored as the project's source: no secret in it."""
        if not self.subdirectory:
            return self.location
        return f"{self.location}#subdirectory={self.subdirectory}"


def is_url(source: str) -> bool:
    return "://" in source or bool(_SCP_LIKE.match(source))


def _split_fragment(source: str) -> tuple[str, str]:
    """`URL#subdirectory=a/b` -> (URL, "a/b"), as pip spells it."""
    url, _, fragment = source.partition("#")
    for part in fragment.split("&"):
        key, _, value = part.partition("=")
        if key == "subdirectory" and value:
            subdir = value.rstrip("/")
            if (problem := relative_path_problem(subdir)) is not None:
                raise SourceError(f"subdirectory '{value}' {problem}.")
            return url, subdir
    return url, ""


def _check_text(source: str) -> None:
    if not source:
        raise SourceError("No repository given.")
    if len(source) > MAX_SOURCE_LENGTH:
        raise SourceError(
            f"The repository location is longer than {MAX_SOURCE_LENGTH} characters."
        )
    if _UNSAFE_CHARS.search(source):
        raise SourceError(
            "The repository location holds a space or control character; "
            "give a URL or path without them."
        )
    if source.startswith("-"):
        raise SourceError(
            f"'{source}' is not a repository location (it starts with '-')."
        )


def _remote(url: str) -> tuple[str, RepoCredentials | None]:
    """The URL without user-info, and the credentials that were in it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("ssh", "git+ssh"):
        raise SourceError(f"{scheme} URLs are not supported.", hint=SSH_HINT)
    if scheme not in REMOTE_SCHEMES:
        raise SourceError(
            f"'{scheme}://' is not a repository URL FLOps clones "
            f"(it clones {', '.join(s + '://' for s in REMOTE_SCHEMES)}).",
        )
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not parts.hostname:
        raise SourceError(f"{scheme}:// URL without a host.")
    credentials = None
    if at:
        if scheme != "https":
            raise SourceError(
                f"Credentials in a {scheme}:// URL would cross the network in clear.",
                hint="Use the https URL of the repository.",
            )
        user, _, password = userinfo.partition(":")
        credentials = RepoCredentials(unquote(user), unquote(password))
    clean = urlunsplit((scheme, hostport, parts.path, parts.query, ""))
    return clean, credentials


def parse(source: str, base: Path | None = None) -> RepoSource:
    """Validate what a submission names as its repo; SourceError says what is wrong.

    Local paths (and file:// URLs) are made absolute: the service has its own
    working directory. Whether this tenant may clone a local path is decided by
    the caller (`check_local_access`).
    """
    source = source.strip()
    _check_text(source)
    location, subdir = _split_fragment(source)
    if _TRANSPORT_HELPER.match(location):
        raise SourceError(
            f"'{location.split('::')[0]}::' transport helpers are refused: they run "
            "programs on the service's host.",
            hint="Give an https URL.",
        )
    if _SCP_LIKE.match(location):
        raise SourceError(
            f"'{location}' is an ssh location; ssh is not supported.", hint=SSH_HINT
        )
    if location.lower().startswith("file://"):
        location = unquote(urlsplit(location).path)
    elif "://" in location:
        clean, credentials = _remote(location)
        return RepoSource(clean, subdir, local=False, credentials=credentials)
    try:
        path = Path(location).expanduser()
    except RuntimeError:  # `~name` of a user this host does not have
        raise SourceError(
            f"'{location}' names the home of a user this host does not have.",
            hint="Give an https URL, or an absolute path.",
        ) from None
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return RepoSource(str(path.resolve()), subdir, local=True)

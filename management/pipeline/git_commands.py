"""Git's command lines and environment for cloning a tenant's repository.

Pure functions, tested by equality (tests/unit/test_git_commands.py). Every
command ends its options with `--` before any location, so nothing a tenant
sends can be read as an option; git runs with an environment built from an
allowlist (no service credential, none of the service's git or ssh config) and
only the transports named in GIT_ALLOW_PROTOCOL. Credentials reach git through
its `store` credential helper reading a 0600 file, never a command line or an
environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from flops_management.sandbox import PROXY_VARIABLES

REMOTE_PROTOCOLS = ("https", "http", "git")
# Proxies and locale: what cloning needs from the service's environment.
PASSED_THROUGH = (*PROXY_VARIABLES, "LANG")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# Refuse malformed objects on the way in; no credential helper but FLOps' own.
_HARDENING = ("transfer.fsckObjects=true", "credential.helper=")


def git_env(
    home: Path,
    *,
    local: bool,
    ca_bundle: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Git's whole environment: an empty HOME, no system or global config."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in PASSED_THROUGH if name in source}
    protocols = [*REMOTE_PROTOCOLS, "file"] if local else list(REMOTE_PROTOCOLS)
    env.update(
        {
            "PATH": source.get("PATH", DEFAULT_PATH),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            # Overrides every protocol.*.allow: ext:: and the rest are refused.
            "GIT_ALLOW_PROTOCOL": ":".join(protocols),
        }
    )
    if ca_bundle is not None:
        env["GIT_SSL_CAINFO"] = str(ca_bundle)
    return env


def _config(credential_file: Path | None) -> list[str]:
    args: list[str] = []
    for item in _HARDENING:
        args += ["-c", item]
    if credential_file is not None:
        args += ["-c", f"credential.helper=store --file={credential_file}"]
    return args


def clone_args(
    git: str,
    url: str,
    dest: Path,
    ref: str | None,
    *,
    shallow: bool,
    credential_file: Path | None = None,
) -> list[str]:
    """`git clone` of `url` into `dest`: shallow at a branch or tag, or whole
    (without a checkout) when `ref` is a commit to find in the history."""
    args = [git, *_config(credential_file), "clone", "--quiet"]
    if shallow:
        args += ["--depth", "1", "--single-branch"]
        if ref is not None:
            args += ["--branch", ref]
    else:
        args.append("--no-checkout")
    return [*args, "--", url, str(dest)]


def checkout_args(git: str, repo: Path, commit: str) -> list[str]:
    """Check out `commit` (a ref grammar-checked SHA or name) detached; `--` ends
    the revision so no path is read."""
    return [git, "-C", str(repo), "checkout", "--quiet", "--detach", commit, "--"]


def head_args(git: str, repo: Path) -> list[str]:
    return [git, "-C", str(repo), "rev-parse", "--verify", "HEAD^{commit}"]


def toplevel_args(git: str, path: Path) -> list[str]:
    return [git, "-C", str(path), "rev-parse", "--show-toplevel"]


def dirty_args(git: str, repo: Path) -> list[str]:
    return [git, "-C", str(repo), "status", "--porcelain", "--untracked-files=normal"]


def credential_line(url: str, username: str, password: str) -> str:
    """A line of git's credential-store file for `url`'s protocol and host."""
    from urllib.parse import quote, urlsplit

    parts = urlsplit(url)
    user = quote(username, safe="")
    secret = quote(password, safe="")
    auth = f"{user}:{secret}" if password else user
    return f"{parts.scheme}://{auth}@{parts.netloc}\n"

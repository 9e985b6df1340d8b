"""Running tenant code with nothing of the service's: bubblewrap plus an identity.

Everything that executes a tenant's code on this host (building its environment,
whose package builds and `.pth` files run code; the smoke test; every actor; the
local inference server) is started through `Sandbox.command()`:

- **a mount namespace** (bubblewrap, Debian's `bubblewrap`): the process sees the
  system's read-only folders (/usr, /etc), the interpreter, and exactly the paths
  its spec names (its environment, repo and data read-only; its own Flower home
  writable) at the same paths as outside. FLOPS_HOME, the service's token,
  database, logs, registry and other jobs are simply not there; /tmp is empty.
- **its own PID and IPC namespaces**: it cannot see or signal the service's
  processes, nor read their `/proc/<pid>/environ`.
- **an unprivileged identity**: when the service runs as root (the embedded
  stack, the compose install), the process drops to its tenant's own uid/gid
  with no capabilities and no-new-privs (`setpriv`); as a normal user, bubblewrap
  maps it into a user namespace of its own.
- **a scrubbed environment**: only what the job needs (`tenant_env`), never the
  service's variables.

Why bubblewrap: no daemon, in Debian, works as root and unprivileged, and
describes the whole sandbox as one argument list (tested by equality). The dev
switch FLOPS_DEV_UNSANDBOXED_TENANT_CODE runs tenant code as the service, for
debugging on a machine where nothing else runs; the production profile refuses
it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flops import subprocesses
from flops.errors import CommandError, FlopsError
from flops_management.settings import Settings

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# The sandbox's own empty tmpfs folders, not the host's.
TMP = "/tmp"  # noqa: S108
SHM = "/dev/shm"  # noqa: S108
# Read-only in every sandbox: the system, never the service's state.
SYSTEM_FOLDERS = ("/usr", "/etc")
# Merged-/usr links (or folders, on older layouts).
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What libraries read to size their thread pools and memory.
SYSTEM_INFO = ("/sys/devices/system/cpu", "/sys/fs/cgroup")
INSTALL_HINT = (
    "Install bubblewrap (`apt-get install bubblewrap`, or `make system`). For "
    "debugging alone on a machine nobody else uses, "
    "FLOPS_DEV_UNSANDBOXED_TENANT_CODE=1 runs tenant code as the service."
)


@dataclass(frozen=True)
class Identity:
    """The unprivileged uid/gid a tenant's code runs as."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Mounts:
    """What one sandboxed process sees besides the system, at the same paths."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    chdir: Path = Path(TMP)


@dataclass(frozen=True)
class SystemPath:
    path: str
    link: str | None  # the target when `path` is a symlink


def system_layout() -> list[SystemPath]:
    """The host's system folders as they are (merged /usr or not)."""
    found = []
    for name in (*SYSTEM_FOLDERS, *SYSTEM_LINKS):
        path = Path(name)
        if path.is_symlink():
            found.append(SystemPath(name, str(path.readlink())))
        elif path.is_dir():
            found.append(SystemPath(name, None))
    return found


def _ancestors(paths: Sequence[Path], covered: Sequence[Path]) -> list[Path]:
    """Folders to create (0755) so each bound path is reachable; bubblewrap would
    make them 0700 when run as root, which an unprivileged identity cannot cross."""
    needed: set[Path] = set()
    for path in paths:
        for parent in path.parents:
            if parent == Path("/") or any(
                parent == c or (parent.is_relative_to(c) and c != Path(TMP))
                for c in covered
            ):
                continue
            needed.add(parent)
    return sorted(needed, key=lambda p: (len(p.parts), str(p)))


def bwrap_args(
    bwrap: str,
    mounts: Mounts,
    *,
    system: Sequence[SystemPath],
    interpreter: Sequence[Path] = (),
    identity: Identity | None,
    setpriv: str | None,
) -> list[str]:
    """The sandbox as an argument list to put in front of a command."""
    # No --die-with-parent: actors outlive a killed service, as their process
    # group (which the sandbox keeps) is what the service stops them by, at once
    # or after its restart.
    args = [bwrap, "--unshare-pid", "--unshare-ipc"]
    args += ["--unshare-uts", "--hostname", "flops-sandbox"]
    if identity is None:  # not root: a user namespace of its own
        args.append("--unshare-user")
    covered: list[Path] = []
    for item in system:
        if item.link is not None:
            args += ["--symlink", item.link, item.path]
        else:
            args += ["--ro-bind", item.path, item.path]
            covered.append(Path(item.path))
    for info in SYSTEM_INFO:
        args += ["--ro-bind-try", info, info]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", SHM]
    args += ["--perms", "1777", "--tmpfs", TMP]
    bound = [*interpreter, *mounts.read_only, *mounts.writable, mounts.chdir]
    for folder in _ancestors(bound, [*covered, Path(TMP)]):
        args += ["--perms", "0755", "--dir", str(folder)]
    for path in [*interpreter, *mounts.read_only]:
        if not any(path.is_relative_to(c) for c in covered):
            args += ["--ro-bind", str(path), str(path)]
    for path in mounts.writable:
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(mounts.chdir), "--"]
    if identity is not None:
        assert setpriv is not None
        args += [
            setpriv,
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return args


# Where the host's CA bundle is (paths, no secrets): TLS-intercepting proxies.
CA_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
)
# What an installer needs to reach the package index. An index URL may carry
# the operator's index credential, which package builds can then read: use a
# read-only one (SECURITY.md).
PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
INSTALLER_VARIABLES = (
    *CA_VARIABLES,
    *PROXY_VARIABLES,
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_DEFAULT_TIMEOUT",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
)


def tenant_env(
    extra: Mapping[str, str] | None = None,
    *,
    passed: Sequence[str] = CA_VARIABLES,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A tenant process's whole environment: nothing of the service's but the
    `passed` variables (CA bundle paths by default)."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in passed if name in source}
    env.update(
        {
            "PATH": DEFAULT_PATH,
            "HOME": TMP,
            "TMPDIR": TMP,
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            # No library phones home from tenant code (hosts may be offline).
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
    )
    env.update(extra or {})
    return env


def host_files(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Files the variables in `env` name outside /usr and /etc (a CA bundle in
    /opt, say), to be bound read-only."""
    found = []
    for name in CA_VARIABLES:
        value = env.get(name)
        if value and Path(value).exists():
            path = Path(value).resolve()
            if not path.is_relative_to("/usr") and not path.is_relative_to("/etc"):
                found.append(path)
    return tuple(found)


def interpreter_paths() -> list[Path]:
    """Where the Python that environments are made from lives (a venv's
    `bin/python` links there), when that is not already under /usr."""
    paths = {Path(sys.base_prefix).resolve()}
    return sorted(p for p in paths if not p.is_relative_to("/usr"))


class Sandbox:
    """Wraps tenant commands; one per service (settings decide whether it is on)."""

    def __init__(self, enabled: bool, uid_base: int) -> None:
        self.enabled = enabled
        self.privileged = os.geteuid() == 0
        self.uid_base = uid_base
        self._checked = False

    def identity(self, tenant_index: int) -> Identity | None:
        """The tenant's own ids when the service can switch to them (root)."""
        if not (self.enabled and self.privileged):
            return None
        return Identity(self.uid_base + tenant_index, self.uid_base + tenant_index)

    def command(
        self, args: Sequence[str], mounts: Mounts, identity: Identity | None
    ) -> list[str]:
        if not self.enabled:
            return list(args)
        self.check()
        prefix = bwrap_args(
            _tool("bwrap"),
            mounts,
            system=system_layout(),
            interpreter=interpreter_paths(),
            identity=identity,
            setpriv=_tool("setpriv") if identity is not None else None,
        )
        return [*prefix, *args]

    def check(self) -> None:
        """FlopsError saying how to fix it when no sandbox can be made here."""
        if self._checked or not self.enabled:
            return
        probe = bwrap_args(
            _tool("bwrap"),
            Mounts(),
            system=system_layout(),
            identity=Identity(self.uid_base, self.uid_base)
            if self.privileged
            else None,
            setpriv=_tool("setpriv") if self.privileged else None,
        )
        try:
            subprocesses.run([*probe, "true"], timeout=60)
        except CommandError as err:
            raise FlopsError(
                "Tenant code cannot be sandboxed on this host: bubblewrap failed "
                f"({err.output.strip() or err.returncode}).",
                hint="Run the service as root, or allow unprivileged user "
                "namespaces. " + INSTALL_HINT,
            ) from None
        self._checked = True

    def give(self, path: Path, identity: Identity | None) -> None:
        """Make `path` (a folder the tenant writes: a Flower home, its environment
        while it is built) the tenant's, recursively, never following a link."""
        if identity is None:
            return
        for item in _walk(path):
            os.chown(item, identity.uid, identity.gid, follow_symlinks=False)

    def share(self, path: Path, identity: Identity | None) -> None:
        """Let the tenant read `path` (its checkout, data, model) through its group;
        the files stay the service's, so the tenant cannot change their modes."""
        if identity is None:
            return
        for item in _walk(path):
            if item.is_symlink():
                continue
            os.chown(item, -1, identity.gid)
            mode = item.stat().st_mode
            read = 0o040 | (0o010 if item.is_dir() or mode & 0o100 else 0)
            item.chmod((mode & 0o7777) | read)


_SANDBOXES: dict[tuple[bool, int], Sandbox] = {}


def sandbox_for(settings: Settings) -> Sandbox:
    """The service's sandbox (one per setting, so its probe runs once)."""
    key = (not settings.dev_unsandboxed_tenant_code, settings.tenant_uid_base)
    if key not in _SANDBOXES:
        _SANDBOXES[key] = Sandbox(*key)
    return _SANDBOXES[key]


def _walk(path: Path) -> list[Path]:
    if not path.exists():
        return []
    items = [path]
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            base = Path(dirpath)
            items += [base / name for name in [*dirnames, *filenames]]
    return items


def _tool(name: str) -> str:
    return subprocesses.which(name, hint=INSTALL_HINT)

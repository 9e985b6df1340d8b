"""The one place FLOps starts external programs.

Argument lists only, never a shell; the executable is resolved with `shutil.which`
first so a missing tool is reported by name; a failure raises `CommandError` with
the command and the tail of its output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flops.errors import CommandError, FlopsError

logger = logging.getLogger(__name__)

LineCallback = Callable[[str], None]


def which(name: str, *, path: str | None = None, hint: str | None = None) -> str:
    """Return the absolute path of `name`, or raise a FlopsError naming it."""
    if os.sep in name:
        if Path(name).is_file() and os.access(name, os.X_OK):
            return name
        found = None
    else:
        found = shutil.which(name, path=path)
    if found is None:
        raise FlopsError(
            f"`{name}` was not found on PATH.",
            hint=hint or f"Install `{name}` or put it on PATH, then retry.",
        )
    return found


def _resolve(args: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
    if not args:
        raise ValueError("empty command")
    search_path = env.get("PATH") if env is not None else None
    return [which(args[0], path=search_path), *args[1:]]


def run(
    args: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_line: LineCallback | None = None,
    hint: str = "",
    check: bool = True,
) -> str:
    """Run a command to completion and return its combined stdout/stderr.

    `on_line` receives each output line as it arrives, so long commands (builds,
    installs) can stream their progress into a job's events.
    """
    argv = _resolve(args, env)
    logger.debug("run: %s", argv)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        returncode: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        returncode = None
    reader.join(timeout=5)
    output = "".join(lines)
    if check and returncode != 0:
        raise CommandError(list(argv), returncode, output, hint=hint)
    return output


def spawn(
    args: Sequence[str],
    *,
    log_path: Path,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own session, output appended to a file.

    Its own session (process group) lets `kill_group` stop it together with every
    child it forks, which is what cancelling a job needs.
    """
    argv = _resolve(args, env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.debug("spawn: %s > %s", argv, log_path)
    # Logs are the service's: private (0600), whatever the umask.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log_file:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs. A zombie (killed, not yet reaped by
    its parent, e.g. an orphan whose init is slow to reap) counts as dead."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal check
    # The state follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def pid_cmdline(pid: int) -> bytes:
    """The process's command line (NUL-separated), or b"" when unknown."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (its leader may be gone: a server's
    workers outlive it when only the leader is killed)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After the parenthesised name: state, ppid, pgrp.
        state, _ppid, pgrp = stat.rsplit(")", 1)[-1].split()[:3]
        if int(pgrp) == pgid and state not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


def kill_group(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | int, grace: float = 5.0
) -> None:
    """SIGTERM a process group, then SIGKILL what is left after `grace` seconds."""
    pid = proc if isinstance(proc, int) else proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if isinstance(proc, int):
                if not pid_alive(pid) and not group_members(pid):
                    return
            elif proc.poll() is not None and not _group_alive(pid):
                return
            time.sleep(0.05)


def kill_groups(procs: list[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGTERM several process groups at once, SIGKILL what remains after `grace`.

    Together rather than one by one: stopping a job's six actors then takes one
    grace period at most, not six.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if all(p.poll() is not None and not _group_alive(p.pid) for p in procs):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The worker process: `python -m flops.worker serve --socket PATH --repo DIR`.

Started by `flops.executor` (from the user's environment), it imports the user's
code once, listens on a Unix socket, and forks a child per connection: one
connection is one Flower task, so each task gets a fresh process and a fresh
ModelManager while imports stay warm, and a crash in the user's code ends only
that task. It exits when the process that started it is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from flops import learned_imports, usercode
from flops.errors import FlopsError
from flops.worker import autolog, deferred, protocol
from flops.worker.session import Session

logger = logging.getLogger("flops.worker")

ACCEPT_TIMEOUT_S = 1.0


def preload(role: str, repo: Path) -> None:
    """Import what every task imports, so forked children start warm."""
    if role == "learner":
        with contextlib.suppress(ImportError):
            import datasets  # noqa: F401 - what load_dataset() needs on every task
    try:
        usercode.load_model_manager_class(repo)
    except usercode.UserCodeError as err:
        # The task hits the same error and reports it through Flower.
        logger.warning("Could not preload the repo's code: %s", err)
    if role == "learner":
        autolog.preload(repo)


def serve_connection(conn: socket.socket, repo: Path, spool: Path) -> None:
    """Answer one task's requests until it hangs up."""
    session = Session(repo, spool)
    while True:
        message = protocol.receive(conn)
        if message is None:
            return
        request, arrays = message
        op = str(request.get("op"))
        try:
            result, out = session.handle(op, dict(request.get("args") or {}), arrays)
        except FlopsError as err:
            protocol.send(conn, {"ok": False, "error": str(err)})
            continue
        except Exception as exc:  # the user's code may raise anything
            message_text = usercode.describe(exc, f"the model worker's {op}", repo)
            protocol.send(conn, {"ok": False, "error": message_text})
            continue
        protocol.send(conn, {"ok": True, "result": result}, out)


def _reap(children: set[int], folder: Path) -> None:
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if not done:
                continue
        children.discard(pid)
        learned_imports.learn(folder, pid)


def serve(socket_path: Path, repo: Path, role: str) -> None:
    owner = os.getppid()
    usercode.ensure_on_path(repo)
    preload(role, repo)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener.bind(str(socket_path))
    listener.listen(16)
    listener.settimeout(ACCEPT_TIMEOUT_S)
    children: set[int] = set()
    logger.info("model worker (%s) ready on %s", role, socket_path)
    folder = socket_path.parent
    while os.getppid() == owner:  # the executor died: nobody will connect again
        _reap(children, folder)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        before = set(sys.modules)
        pid = os.fork()
        if pid == 0:  # child: this task's process
            listener.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            conn.settimeout(None)
            code = 0
            try:
                spool = deferred.spool_folder(folder)
                serve_connection(conn, repo, spool)
                conn.close()  # the task has its reply: what follows is ours
                deferred.run_queued(spool)
            except protocol.ProtocolError as err:
                logger.error("task connection broken: %s", err)
                code = 1
            except BaseException:
                logger.exception("task failed")
                code = 1
            finally:
                learned_imports.record(folder, before)
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        conn.close()
        children.add(pid)
    logger.info("model worker: its executor is gone, stopping")

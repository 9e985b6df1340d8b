"""The Flower side of the model worker: start it, and talk to it per task.

`Worker` (a context manager, owned by `flops.executor`) starts
`python -m flops.worker serve` from the user's environment and removes it.
`WorkerSession` is one task's connection: each method is one request, and a
failure in the user's code comes back as the UserCodeError the worker raised.
Forked task processes find the socket through FLOPS_WORKER_SOCKET.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from flops.errors import FlopsError
from flops.usercode import UserCodeError
from flops.worker import protocol

SOCKET_ENV = "FLOPS_WORKER_SOCKET"
# A worker importing TensorFlow or torch on a busy 2-core host takes its time.
READY_TIMEOUT_S = 300.0
# What the worker must not inherit from the Flower runtime's environment: it runs
# on the user's environment's own interpreter and site-packages.
RUNTIME_ONLY_VARIABLES = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")


class WorkerError(FlopsError):
    """The model worker could not be started or reached."""


def worker_args(python: str, socket_path: Path, repo: Path, role: str) -> list[str]:
    return [
        python,
        "-m",
        "flops.worker",
        "serve",
        "--socket",
        str(socket_path),
        "--repo",
        str(repo),
        "--role",
        role,
    ]


def worker_env(base: dict[str, str], python_path: str | None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in RUNTIME_ONLY_VARIABLES}
    if python_path:
        env["PYTHONPATH"] = python_path
    return env


class Worker:
    """The worker process for one actor; its socket in a private folder."""

    def __init__(
        self, python: str, repo: Path, role: str, python_path: str | None = None
    ) -> None:
        self.python = python
        self.repo = repo
        self.role = role
        self.python_path = python_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.socket_path = Path()

    def __enter__(self) -> Worker:
        self._folder = tempfile.TemporaryDirectory(prefix="flops-worker-")
        self.socket_path = Path(self._folder.name) / "worker.sock"
        self.proc = subprocess.Popen(
            worker_args(self.python, self.socket_path, self.repo, self.role),
            env=worker_env(dict(os.environ), self.python_path),
        )
        os.environ[SOCKET_ENV] = str(self.socket_path)
        return self

    def exited(self) -> int | None:
        """The worker's exit code once it is gone, else None."""
        return None if self.proc is None else self.proc.poll()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._folder is not None:
            self._folder.cleanup()


def _connect(path: Path, timeout: float) -> socket.socket:
    """Connect once the worker listens (it may still be importing the repo)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as err:
            sock.close()
            if time.monotonic() > deadline:
                raise WorkerError(
                    f"The model worker did not answer on {path} within {timeout:.0f}s "
                    f"({err}); its log says why."
                ) from None
            time.sleep(0.05)


class WorkerSession:
    """One task's connection to the worker (a fresh ModelManager per session)."""

    def __init__(self, path: Path | None = None, timeout: float = READY_TIMEOUT_S):
        where = path or Path(os.environ.get(SOCKET_ENV, ""))
        if not str(where):
            raise WorkerError(f"No model worker: {SOCKET_ENV} is not set.")
        self.sock = _connect(where, timeout)

    def __enter__(self) -> WorkerSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def request(
        self, op: str, arrays: Sequence[np.ndarray] = (), **args: Any
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        try:
            protocol.send(self.sock, {"op": op, "args": args}, arrays)
            message = protocol.receive(self.sock)
        except (OSError, protocol.ProtocolError) as err:
            raise UserCodeError(
                f"The model worker's process for this task died during {op} ({err}); "
                "the user's code crashed the interpreter or was killed (memory?)."
            ) from None
        if message is None:
            raise UserCodeError(
                f"The model worker's process for this task exited during {op}: the "
                "user's code ended it (sys.exit, a crash, or the memory limit)."
            )
        reply, out = message
        if not reply.get("ok"):
            raise UserCodeError(str(reply.get("error")))
        return dict(reply.get("result") or {}), out

    def new(
        self,
        data_dir: Path | None = None,
        tags: Sequence[str] = (),
        requirements: Sequence[str] = (),
    ) -> None:
        self.request(
            "new",
            data_dir=str(data_dir) if data_dir else None,
            tags=list(tags),
            requirements=list(requirements),
        )

    def set_parameters(self, arrays: Sequence[np.ndarray]) -> None:
        self.request("set_parameters", arrays)

    def get_parameters(self) -> list[np.ndarray]:
        return self.request("get_parameters")[1]

    def _with_logged(self, op: str, **args: Any) -> dict[str, Any]:
        """The reply of a call into the user's code, with what its own MLflow
        calls logged (`logged`, `artifacts` as a tar.gz; see worker.capture)."""
        result, out = self.request(op, **args)
        result["artifacts"] = out[0].tobytes() if out else None
        return result

    def fit(self) -> dict[str, Any]:
        return self._with_logged("fit")

    def evaluate(self, final: bool = False) -> dict[str, Any]:
        """`final`: the learner's last task of the job (flops.worker.deferred)."""
        return self._with_logged("evaluate", final=final)

    def describe(self, flavor: str | None) -> dict[str, Any]:
        return self.request("describe", flavor=flavor)[0]

    def signature(self, flavor: str | None) -> dict[str, Any]:
        return self.request("signature", flavor=flavor)[0]

    def save_model(
        self,
        path: Path,
        flavor: str | None,
        signature: dict[str, str] | None,
        requirements: Sequence[str],
    ) -> dict[str, Any]:
        return self.request(
            "save_model",
            path=str(path),
            flavor=flavor,
            signature=signature,
            requirements=list(requirements),
        )[0]

"""`flops-executor`: Flower's SuperExec role with the imports kept warm.

Flower's SuperExec starts a fresh `flwr-clientapp` (or `flwr-serverapp`) process
for every task, and each spends about 2 s on 2 cores importing flwr, NumPy and the
user's libraries before doing any work: two tasks per learner per round. This
executor imports all of that once, then forks per task; the child runs Flower's
own `run_clientapp`/`run_serverapp`, so a task still gets a process of its own
(a crash in user code takes down only that task) and the import cost is gone.

It is started next to a SuperLink/SuperNode running with `--isolation process`,
which is Flower's supported way of bringing your own executor. It runs in FLOps'
runtime environment and never imports the user's code: it starts the model
worker (flops/worker) from the user's environment, which tasks talk to.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from flops import events, learned_imports, usercode
from flops.worker.client import Worker

logger = logging.getLogger("flops.executor")

ROLES = {"learner": "flwr-clientapp", "aggregator": "flwr-serverapp"}
TASK_EXITED = "task_exited"
# Give up after the Runtime API has been unreachable this long (its owner died).
UNREACHABLE_LIMIT_S = 30.0


def _preload_runtime(role: str, flower_app: str | None = None) -> None:
    """Import what every task of `role` needs, so forked children start warm:
    for a Flower app, its own component's module (it runs in this process)."""
    import flwr.superlink.runtime.run_serverapp
    import flwr.supernode.runtime.run_clientapp  # noqa: F401

    if flower_app:
        import importlib

        import flops.app.flower_app

        usercode.ensure_on_path(usercode.repo_dir())
        try:
            importlib.import_module(flower_app.partition(":")[0])
        except Exception as exc:  # the task reports the same error, named
            logger.warning("Could not preload %s: %s", flower_app, exc)
        return
    if role == "learner":
        import flops.app.client
    else:
        import mlflow  # noqa: F401

        import flops.app.server  # noqa: F401


def warm() -> None:
    """Import everything the actors of an environment import, once.

    Run by the environment builder with bytecode writing on, so each module an
    actor needs is compiled once per environment rather than in every process
    (hosts with PYTHONDONTWRITEBYTECODE never cache it otherwise).
    """
    import flwr.superlink.cli.flower_superlink
    import flwr.supernode.cli.flower_supernode  # noqa: F401

    for role in ROLES:
        _preload_runtime(role)


def _run_task(role: str, address: str, token: str, certificates: bytes | None) -> int:
    """Body of a forked child: Flower's own task runner. Returns the exit code."""
    try:
        if role == "learner":
            from flwr.supernode.runtime.run_clientapp import run_clientapp

            run_clientapp(
                runtime_api_address=address,
                token=token,
                insecure=certificates is None,
                certificates=certificates,
                runtime_dependency_install=False,
            )
        else:
            from queue import Queue

            from flwr.supercore.logger import mirror_output_to_queue, restore_output
            from flwr.superlink.runtime.run_serverapp import run_serverapp

            log_queue: Queue[str | None] = Queue()
            mirror_output_to_queue(log_queue)
            try:
                run_serverapp(
                    runtime_api_address=address,
                    log_queue=log_queue,
                    token=token,
                    insecure=certificates is None,
                    certificates=certificates,
                    runtime_dependency_install=False,
                )
            finally:
                restore_output()
    except SystemExit as exc:  # Flower ends every task with flwr_exit()
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logger.exception("Task failed")
        return 1
    return 0


class ForkingExecutor:
    """Implements Flower's SuperExec `Executor` protocol by forking this process."""

    def __init__(
        self, role: str, certificates: bytes | None, learn_in: Path | None = None
    ) -> None:
        self.role = role
        self.certificates = certificates
        self.children: dict[int, int] = {}  # pid -> task id
        # Where tasks write what they imported, for this process to import too
        # (flops.learned_imports): a Flower app's tasks run the app's own code.
        self.learn_in = learn_in

    def get_eligible_capacity(
        self, supported_task_types: set[Any], **_: Any
    ) -> tuple[set[Any], set[str]]:
        return supported_task_types, set()

    def wait_for_capacity(self, *_: Any, **__: Any) -> None:
        return None

    def launch(self, spec: Any) -> Any:
        from flwr.supercore.superexec.executor import LaunchResult

        sys.stdout.flush()
        sys.stderr.flush()
        before = set(sys.modules)
        pid = os.fork()
        if pid == 0:  # child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = _run_task(
                self.role, spec.runtime_api_address, spec.token, self.certificates
            )
            if self.learn_in is not None:
                learned_imports.record(self.learn_in, before)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        self.children[pid] = spec.task_id
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        for pid, task_id in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                del self.children[pid]
                code = os.waitstatus_to_exitcode(status)
                events.emit(TASK_EXITED, role=self.role, task_id=task_id, code=code)
                if self.learn_in is not None:
                    learned_imports.learn(self.learn_in, pid)

    def close(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def serve(
    role: str,
    address: str,
    repo: Path,
    poll: float,
    certificates: bytes | None,
    worker: Worker | None = None,
    learn_in: Path | None = None,
) -> None:
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.superexec.plugin.base_exec_plugin import BaseExecPlugin

    task_type = TaskType(ROLES[role])

    class Plugin(BaseExecPlugin):
        supported_task_types = frozenset({task_type})

    executor = ForkingExecutor(role, certificates, learn_in)
    plugin = Plugin(
        runtime_api_address=address,
        insecure=certificates is None,
        root_certificates_path=None,
        runtime_dependency_install=False,
        executor=executor,
    )
    retry = make_simple_http_retry_invoker()
    retry.max_tries = 1  # this loop retries by itself and notices a dead owner
    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=certificates is None,
        root_certificates=certificates,
        interceptors=[],
        retry_invoker=retry,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        executor.close()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("flops-executor (%s) serving %s from %s", role, address, repo)
    unreachable_since: float | None = None
    while True:
        executor.reconcile()
        if worker is not None and worker.exited() is not None:
            # Every task would fail: stop, so the learner is reported as gone.
            logger.error("The model worker exited (code %s)", worker.exited())
            executor.close()
            raise SystemExit(1)
        try:
            res = client.AcquireTask(
                AcquireTaskRequest(supported_task_types=[task_type])
            )
            unreachable_since = None
        except Exception as exc:  # connection refused while the owner starts or dies
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > UNREACHABLE_LIMIT_S:
                logger.error("Runtime API at %s unreachable: %s", address, exc)
                executor.close()
                raise SystemExit(1) from exc
            time.sleep(0.5)
            continue
        if res.HasField("task") and res.token:
            logger.info("launching task %s", res.task.task_id)
            plugin.launch_task(token=res.token, task=res.task)
            continue  # another task may be waiting already
        time.sleep(poll)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "role", choices=[*sorted(ROLES), "warm"], help="warm: compile imports, exit"
    )
    parser.add_argument("--runtime-api-address")
    parser.add_argument("--repo-dir", default=os.environ.get(usercode.REPO_DIR_ENV))
    parser.add_argument(
        "--worker-python",
        default=sys.executable,
        help="the interpreter of the user's environment (the model worker's)",
    )
    parser.add_argument(
        "--worker-path",
        default=None,
        help="PYTHONPATH of the model worker (images: the user's site folder)",
    )
    parser.add_argument(
        "--flower-app",
        default=None,
        metavar="MODULE:ATTR",
        help="a Flower app's component for this role: run here, no model worker",
    )
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--root-certificates", help="PEM CA bundle; omit for no TLS")
    args = parser.parse_args(argv)
    if args.role == "warm":
        warm()
        return
    if not args.runtime_api_address:
        parser.error("--runtime-api-address is required")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per task poll, twenty a second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    repo = Path(args.repo_dir or ".").resolve()
    os.environ[usercode.REPO_DIR_ENV] = str(repo)
    certificates = (
        Path(args.root_certificates).read_bytes() if args.root_certificates else None
    )
    with contextlib.ExitStack() as stack:
        # A Flower app's code runs in the tasks themselves: no model worker, and
        # a folder where they write what they imported (flops.learned_imports).
        worker, learn_in = None, None
        if args.flower_app:
            folder = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="flops-executor-")
            )
            learn_in = Path(folder)
        else:
            worker = stack.enter_context(
                Worker(args.worker_python, repo, args.role, args.worker_path)
            )
        _preload_runtime(args.role, args.flower_app)
        serve(
            args.role,
            args.runtime_api_address,
            repo,
            args.poll_interval,
            certificates,
            worker,
            learn_in,
        )


if __name__ == "__main__":
    main()

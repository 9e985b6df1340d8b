"""The FL-actor image's entrypoint: `python3 -m flops.actor learner|aggregator|cluster`.

A container runs one role. Each role is pairs of processes, as with the `local`
orchestrator: a Flower server (SuperLink or SuperNode, `--isolation process`)
and the `flops-executor` that runs its tasks warm; a learner and an aggregator
are one pair, a cluster's aggregator (hierarchical mode) two: its SuperLink
and its uplink to the root. This supervisor starts them, forwards
SIGTERM/SIGINT, and exits with the first one's exit code, stopping the others,
so the container's state is the role's state.

`python3 -m flops.actor run NAME ARGS...` starts a console script by its entry
point name: image packages are installed into a plain folder, without scripts.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from flops import actor_commands, actor_files
from flops.app.relay import relay_path
from flops.app.run_settings import node_config_args, uplink_node_config
from flops.usercode import REPO_DIR_ENV
from flops.waiting import port_open, wait_until

READY_TIMEOUT_S = 120.0
DEFAULT_SUPERLINK_PORT = 8000
DEFAULT_RUNTIME_PORT = 9094
# Inside a cluster's container: the relay between its uplink and aggregator.
RELAY_DIR = "/tmp/flops-relay"  # noqa: S108 - the container's own /tmp
# The image's user-site folder (images/fl-actor.Containerfile): the model
# worker's PYTHONPATH, in place of the Flower runtime's.
WORKER_PATH_ENV = "FLOPS_WORKER_PATH"


def _executor(
    role: str,
    address: str,
    repo: str,
    poll_interval: float,
    flower_app: str | None,
    tls: actor_commands.FlowerTLS | None = None,
    worker_python: str | None = None,
) -> list[str]:
    return actor_commands.executor_args(
        sys.executable,
        role,
        address,
        repo,
        poll_interval,
        worker_python=worker_python,
        worker_path=None if worker_python else os.environ.get(WORKER_PATH_ENV),
        flower_app=flower_app,
        tls=tls,
    )


def executor_env(flower_app: str | None) -> dict[str, str] | None:
    """A Flower app's executor runs its code: on the user's packages (the
    worker's path), not the Flower runtime's; None: this process's own."""
    if not flower_app or WORKER_PATH_ENV not in os.environ:
        return None
    return {**os.environ, "PYTHONPATH": os.environ[WORKER_PATH_ENV]}


def _in_image(name: str) -> list[str]:
    return [sys.executable, "-m", "flops.actor", "run", name]


def aggregator_commands(
    host: str,
    port: int,
    repo: str,
    poll_interval: float,
    flower_app: str | None = None,
    tls: actor_commands.FlowerTLS | None = None,
    database: str | None = None,
) -> list[list[str]]:
    """`tls`: a folder with the CA's certificate and the SuperLink's
    certificate and key (None: plaintext, `--dev-insecure-flower`);
    `database`: the SuperLink's state file (None: in memory)."""
    return [
        actor_commands.superlink_args(_in_image, host, port, tls, database),
        _executor(
            "aggregator", f"127.0.0.1:{port}", repo, poll_interval, flower_app, tls
        ),
    ]


def learner_commands(
    superlink: str,
    port: int,
    data_dir: str,
    name: str,
    repo: str,
    poll_interval: float,
    partition_id: int = 0,
    num_partitions: int = 1,
    flower_app: str | None = None,
    tls: actor_commands.FlowerTLS | None = None,
    node_key: str | None = None,
    worker_python: str | None = None,
) -> list[list[str]]:
    """`tls`: a folder with the CA's certificate; `node_key`: the learner's
    registered key (both None: plaintext); `worker_python`: the user's
    environment's interpreter, outside an image."""
    node_config = node_config_args(Path(data_dir), name, partition_id, num_partitions)
    return [
        actor_commands.supernode_args(
            _in_image, superlink, port, node_config, tls, node_key
        ),
        _executor(
            "learner",
            f"127.0.0.1:{port}",
            repo,
            poll_interval,
            flower_app,
            worker_python=worker_python,
        ),
    ]


def run_entry_point(name: str, args: list[str]) -> None:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name=name)
    sys.argv = [name, *args]
    sys.exit(entry.load()())


def _wait_port(port: int, server: subprocess.Popen[bytes]) -> bool:
    return wait_until(
        lambda: port_open("127.0.0.1", port),
        READY_TIMEOUT_S,
        hopeless=lambda: server.poll() is not None,
    )


@dataclass(frozen=True)
class Pair:
    """A Flower server (SuperLink or SuperNode) and the executor that runs its
    tasks, started once the server's port answers."""

    server: list[str]
    ready_port: int
    executor: list[str]
    executor_env: dict[str, str] | None = None


def supervise(pairs: list[Pair]) -> int:
    """Start each pair in turn; then wait until any process exits, stop the
    others, and return its exit code (see module doc)."""
    children: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pair in pairs:
        server = subprocess.Popen(pair.server)
        children.append(server)
        if not _wait_port(pair.ready_port, server):
            print(
                f"flops.actor: {pair.server[4]} did not open port {pair.ready_port}",
                flush=True,
            )
            stop(signal.SIGTERM, None)
            return server.wait() or 1
        children.append(subprocess.Popen(pair.executor, env=pair.executor_env))
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    code = next(child.returncode for child in children if child.poll() is not None)
    stop(signal.SIGTERM, None)
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    return code


def cluster_pairs(
    name: str,
    root: str,
    host: str,
    port: int,
    runtime_port: int,
    repo: str,
    poll_interval: float,
    tls: actor_commands.FlowerTLS | None,
    node_key: str | None,
    database: str | None = None,
) -> list[Pair]:
    """A cluster's aggregator (hierarchical mode): its SuperLink on `host:port`
    for its learners, with the executor of its ServerApp; and its uplink, a
    SuperNode dialling the root SuperLink `root` as node `name`, whose tasks
    relay the root's messages to that ServerApp (flops.app.relay)."""
    aggregator, executor = aggregator_commands(
        host, port, repo, poll_interval, tls=tls, database=database
    )
    uplink = actor_commands.supernode_args(
        _in_image,
        root,
        runtime_port,
        uplink_node_config(name, relay_path(RELAY_DIR)),
        tls,
        node_key,
    )
    relay_executor = _executor(
        "learner", f"127.0.0.1:{runtime_port}", repo, poll_interval, None
    )
    return [
        Pair(aggregator, port, executor),
        Pair(uplink, runtime_port, relay_executor),
    ]


def _join(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--join`: join the project, then run as the learner it assigned (the
    superlink, TLS folder, node key and partition fill the other options)."""
    from flops import joining

    token = args.token or os.environ.get("FLOPS_ENROL_TOKEN")
    if args.role != "learner" or not args.project or not token:
        parser.error("--join is for a learner, with --project and --token")
    client = joining.JoinClient(args.join, args.project, token)
    args.name = joining.learner_name(args.name)
    joined = joining.join(
        client,
        args.name,
        Path(args.state),
        args.join_timeout,
        progress=lambda line: print(f"flops.actor: {line}", flush=True),
    )
    assigned = joined.assignment
    args.superlink = joined.superlink
    args.tls_dir = str(joined.tls_dir)
    args.node_key = str(joined.node_key)
    args.partition_id = int(assigned["partition_id"])
    args.num_partitions = int(assigned["num_partitions"])
    args.flower_app = args.flower_app or assigned.get("flower_app")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        run_entry_point(argv[1], argv[2:])
    parser = argparse.ArgumentParser(
        prog="flops.actor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("role", choices=["learner", "aggregator", "cluster"])
    parser.add_argument("--repo-dir", default=os.environ.get(REPO_DIR_ENV, "."))
    parser.add_argument("--poll-interval", type=float, default=0.05)
    # A container's own network namespace: all its interfaces are the container's.
    parser.add_argument("--host", default="0.0.0.0", help="aggregator: listen address")  # noqa: S104
    parser.add_argument(
        "--port", type=int, help="SuperLink port / SuperNode runtime port"
    )
    parser.add_argument(
        "--superlink", help="learner: the SuperLink's host:port; cluster: the root's"
    )
    parser.add_argument(
        "--runtime-port",
        type=int,
        default=DEFAULT_RUNTIME_PORT,
        help="cluster: its uplink SuperNode's runtime port",
    )
    parser.add_argument("--data-dir", default="/data", help="learner: its data")
    parser.add_argument("--name", default=socket.gethostname(), help="learner name")
    parser.add_argument("--partition-id", type=int, default=0, help="learner: index")
    parser.add_argument("--num-partitions", type=int, default=1, help="learners")
    parser.add_argument(
        "--flower-app", metavar="MODULE:ATTR", help="a Flower app's component"
    )
    parser.add_argument(
        "--database", help="aggregator: the SuperLink's state file (a volume)"
    )
    parser.add_argument(
        "--worker-python",
        help="learner: the user's environment's interpreter (outside an image)",
    )
    joining = parser.add_argument_group(
        "joining", "a learner on its owner's machine (flops learner join)"
    )
    joining.add_argument("--join", metavar="API_URL", help="the management API")
    joining.add_argument("--project", help="the project to join")
    joining.add_argument("--token", help="the enrolment token (or FLOPS_ENROL_TOKEN)")
    joining.add_argument(
        "--state", default="/state", help="where the node key and CA are kept"
    )
    joining.add_argument(
        "--join-timeout", type=float, default=3600.0, help="seconds to wait"
    )
    trust = parser.add_mutually_exclusive_group(required=False)
    trust.add_argument(
        "--tls-dir",
        help="folder with ca.crt (and, for the aggregator, superlink.crt and "
        "superlink.key): Flower traffic over TLS",
    )
    parser.add_argument(
        "--node-key",
        help="learner: its private key (OpenSSH, NIST curve), registered with "
        "the SuperLink; needed with --tls-dir",
    )
    trust.add_argument(
        "--dev-insecure-flower",
        action="store_true",
        help="plaintext Flower traffic, for debugging on one host only",
    )
    parser.add_argument(
        "--files-from-env",
        metavar="DIR",
        help="write the FLOPS_FILE_* variables (TLS files, node key) into DIR "
        "and drop them from the environment (orchestrators with no secret store)",
    )
    args = parser.parse_args(argv)
    if args.files_from_env:
        try:
            actor_files.materialise(Path(args.files_from_env), os.environ)
        except actor_files.ActorFilesError as err:
            parser.error(str(err))
    if args.join:
        _join(parser, args)
    if not args.tls_dir and not args.dev_insecure_flower:
        parser.error("one of --tls-dir, --dev-insecure-flower or --join is needed")
    tls = None if args.dev_insecure_flower else actor_commands.FlowerTLS(args.tls_dir)
    if args.role != "aggregator" and (tls is None) != (args.node_key is None):
        parser.error(f"a {args.role} over TLS needs --node-key (and only then)")
    if args.role == "cluster":
        if not args.superlink:
            parser.error("a cluster needs --superlink HOST:PORT (the root's)")
        sys.exit(
            supervise(
                cluster_pairs(
                    args.name,
                    args.superlink,
                    args.host,
                    args.port or DEFAULT_SUPERLINK_PORT,
                    args.runtime_port,
                    args.repo_dir,
                    args.poll_interval,
                    tls,
                    args.node_key,
                    args.database,
                )
            )
        )
    if args.role == "aggregator":
        port = args.port or DEFAULT_SUPERLINK_PORT
        commands = aggregator_commands(
            args.host,
            port,
            args.repo_dir,
            args.poll_interval,
            args.flower_app,
            tls,
            args.database,
        )
    else:
        if not args.superlink:
            parser.error("a learner needs --superlink HOST:PORT")
        port = args.port or DEFAULT_RUNTIME_PORT
        commands = learner_commands(
            args.superlink,
            port,
            args.data_dir,
            args.name,
            args.repo_dir,
            args.poll_interval,
            args.partition_id,
            args.num_partitions,
            args.flower_app,
            tls,
            args.node_key,
            args.worker_python,
        )
    server, executor = commands
    sys.exit(supervise([Pair(server, port, executor, executor_env(args.flower_app))]))


if __name__ == "__main__":
    main()

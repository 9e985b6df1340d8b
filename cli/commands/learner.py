"""`flops learner join`: a data owner runs a learner on their own machine.

The device joins the project with its enrolment token (flops.joining: its own
node key, the CA checked against the token), and once the project's job has
registered it, runs the learner: the project's FL-actor image with Podman
(`--runner image`), or, on a machine that shares the service's file system,
the job's own environments (`--runner environment`). The learner dials the
job's Fleet front over TLS; it listens on no port. Its data is read in place:
each `--data TAG=PATH` (a Parquet file or a folder of them) is shown to the
learner as `<data>/<TAG>/`, read-only in the image.
"""

from __future__ import annotations

import collections
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flops import events, joining
from flops.errors import ConfigError, FlopsError, ServiceUnavailableError
from flops_cli.client import api_url, flops_home

app = typer.Typer(
    help="Run a learner on this machine; its data stays here.", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)

IMAGE_DATA = "/data"
IMAGE_TLS = "/tls"
IMAGE_NODE_KEY = "/node-key"
# How often the running learner checks whether its project has ended.
CHECK_S = 5.0


class Runner(StrEnum):
    auto = "auto"
    image = "image"
    environment = "environment"


def parse_data(items: list[str]) -> dict[str, Path]:
    """`TAG=PATH` pairs; each path a Parquet file or a folder holding some."""
    data: dict[str, Path] = {}
    for item in items:
        tag, sep, raw = item.partition("=")
        if not sep or not tag or not raw:
            raise ConfigError(f"--data {item!r} is not TAG=PATH.")
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            if not any(path.glob("*.parquet")):
                raise ConfigError(f"--data {tag}: {path} holds no *.parquet file.")
        elif not (path.is_file() and path.suffix == ".parquet"):
            raise ConfigError(
                f"--data {tag}: {path} is neither a Parquet file nor a folder."
            )
        data[tag] = path
    return data


def data_folder(state: Path, data: dict[str, Path]) -> Path:
    """`state/data/<tag>` pointing at each tag's files (links, not copies)."""
    folder = state / "data"
    shutil.rmtree(folder, ignore_errors=True)
    for tag, path in data.items():
        if path.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / tag).symlink_to(path, target_is_directory=True)
        else:
            (folder / tag).mkdir(parents=True)
            (folder / tag / path.name).symlink_to(path)
    return folder


def _learner_options(assignment: dict[str, Any], name: str) -> list[str]:
    return [
        "--superlink",
        str(assignment["superlink"]),
        "--name",
        name,
        "--partition-id",
        str(assignment["partition_id"]),
        "--num-partitions",
        str(assignment["num_partitions"]),
        *(
            ["--flower-app", assignment["flower_app"]]
            if assignment["flower_app"]
            else []
        ),
    ]


def image_args(
    podman: str,
    assignment: dict[str, Any],
    name: str,
    data: dict[str, Path],
    joined: joining.Joined,
) -> list[str]:
    """The learner as a Podman container of the job's image: the host's network
    (it dials out, publishes nothing), data, CA and key mounted read-only."""
    mounts: list[str] = []
    for tag, path in data.items():
        target = f"{IMAGE_DATA}/{tag}" + ("" if path.is_dir() else f"/{path.name}")
        mounts += ["--volume", f"{path}:{target}:ro"]
    return [
        podman,
        "run",
        "--rm",
        "--network",
        "host",
        "--name",
        f"flops-learner-{name}",
        *mounts,
        "--volume",
        f"{joined.tls_dir}:{IMAGE_TLS}:ro",
        "--volume",
        f"{joined.node_key}:{IMAGE_NODE_KEY}:ro",
        str(assignment["image"]),  # its entrypoint is `python3 -m flops.actor`
        "learner",
        *_learner_options(assignment, name),
        "--data-dir",
        IMAGE_DATA,
        "--tls-dir",
        IMAGE_TLS,
        "--node-key",
        IMAGE_NODE_KEY,
    ]


def environment_args(
    assignment: dict[str, Any], name: str, data_dir: Path, joined: joining.Joined
) -> list[str]:
    """The learner from the job's environments on this host's file system."""
    runtime = Path(assignment["runtime_environment"] or assignment["environment"])
    environment = Path(assignment["environment"])
    return [
        str(runtime / "bin" / "python"),
        "-m",
        "flops.actor",
        "learner",
        *_learner_options(assignment, name),
        "--data-dir",
        str(data_dir),
        "--tls-dir",
        str(joined.tls_dir),
        "--node-key",
        str(joined.node_key),
        "--repo-dir",
        str(assignment["repo_dir"]),
        "--worker-python",
        str(environment / "bin" / "python"),
    ]


def choose_runner(wanted: Runner, assignment: dict[str, Any]) -> Runner:
    environment = assignment.get("environment")
    local = bool(environment) and Path(str(environment), "bin", "python").exists()
    if wanted is Runner.auto:
        if assignment.get("image"):
            return Runner.image
        if local:
            return Runner.environment
    if wanted is Runner.image and assignment.get("image"):
        return Runner.image
    if wanted is Runner.environment and local:
        return Runner.environment
    raise FlopsError(
        f"This machine cannot run the job's learner with runner {wanted.value}: "
        + (
            f"the job's image is {assignment['image']}"
            if assignment.get("image")
            else "the job has no image (its orchestrator runs learners from "
            "environments on the service's host, which this machine does not have)"
        )
        + ".",
        hint="Ask the owner to run the project on a container orchestrator "
        "(orchestrator = docker), whose FL-actor image any machine can run.",
    )


def _show(line: str, verbose: bool) -> None:
    event = events.parse_event(line)
    if event is not None and event.get("type") == events.LEARNER_TASK:
        console.print(f"round {event.get('round')}: {event.get('phase')}")
    elif verbose or "ERROR" in line:
        console.print(line.rstrip(), markup=False)


def _project_ended(client: joining.JoinClient) -> str | None:
    """Why the project is over (its job gone), or None while it runs."""
    try:
        client.assignment()
    except ServiceUnavailableError:
        return None  # the learner trains on; the API may come back
    except FlopsError as err:
        if getattr(err, "http_status", 0) == HTTPStatus.CONFLICT:
            return err.message
        raise
    return None


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the learner's process, before it runs: SIGTERM when this command
    ends, even killed outright (SIGKILL runs no handler that could stop it),
    so no SuperNode is left dialling the SuperLink with the device's key."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run(
    args: list[str], client: joining.JoinClient, state: Path, verbose: bool
) -> int:
    """Run the learner, showing the rounds it takes, until it stops or the
    project ends (then it is stopped: the job's SuperLink is gone)."""
    env = {
        **os.environ,
        "FLWR_HOME": str(state / "flwr"),  # its own, beside its key
        "FLWR_TELEMETRY_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
        preexec_fn=_die_with_parent,  # the CLI is single-threaded
    )
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
    next_check = time.monotonic() + CHECK_S
    last: collections.deque[str] = collections.deque(maxlen=20)
    try:
        while proc.poll() is None:
            assert proc.stdout is not None
            for line in proc.stdout:
                _show(line, verbose)
                last.append(line)
            if time.monotonic() > next_check:
                next_check = time.monotonic() + CHECK_S
                ended = _project_ended(client)
                if ended is not None:
                    console.print(f"stopping: {ended}")
                    proc.terminate()
                    proc.wait(timeout=30)
                    return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)
        return 130
    except BaseException:
        proc.terminate()  # revoked, or the API said something else is wrong
        proc.wait(timeout=30)
        raise
    assert proc.stdout is not None
    for line in proc.stdout:
        _show(line, verbose)
        last.append(line)
    # A SuperNode whose SuperLink went away may exit on its own: that is the
    # project's end, not the learner's failure, when the project says so.
    ended = _project_ended(client)
    if ended is not None:
        console.print(f"stopped: {ended}")
        return 0
    console.print(f"the learner stopped (code {proc.returncode}); its last output:")
    for line in last:
        console.print(line.rstrip(), markup=False)
    return proc.returncode or 1


@app.command("join")
def join(
    project: Annotated[str, typer.Argument(help="the project's id")],
    token: Annotated[
        str,
        typer.Option(envvar="FLOPS_ENROL_TOKEN", help="the enrolment token"),
    ],
    data: Annotated[
        list[str],
        typer.Option("--data", help="TAG=PATH, a Parquet file or folder (repeatable)"),
    ],
    name: Annotated[
        str | None, typer.Option(help="the learner's name (default: host name)")
    ] = None,
    api: Annotated[
        str | None, typer.Option("--api-url", help="the management API's URL")
    ] = None,
    runner: Annotated[Runner, typer.Option(help="auto, image or environment")] = (
        Runner.auto
    ),
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for the project's job")
    ] = 3600.0,
    verbose: Annotated[bool, typer.Option(help="show the learner's output")] = False,
    image: Annotated[
        str | None,
        typer.Option(
            help="run this image instead of the job's (one this machine loaded "
            "itself, say from a file, with no registry in reach)"
        ),
    ] = None,
) -> None:
    """Join a project as a learner and train on local data until it ends."""
    learner = joining.learner_name(name or socket.gethostname())
    given = parse_data(data)
    state = flops_home() / "learners" / project / learner
    client = joining.JoinClient(api or api_url(), project, token)
    joined = joining.join(
        client, learner, state, timeout, progress=lambda line: console.print(line)
    )
    assignment = {**joined.assignment, **({"image": image} if image else {})}
    missing = sorted(set(assignment["data_tags"]) - set(given))
    if missing:
        raise ConfigError(
            f"The project trains on data tags {', '.join(assignment['data_tags'])}; "
            f"give {', '.join(missing)} with --data TAG=PATH."
        )
    chosen = choose_runner(runner, assignment)
    if chosen is Runner.image:
        podman = shutil.which("podman")
        if podman is None:
            raise FlopsError(
                "Podman is not installed here.", hint="apt-get install podman"
            )
        args = image_args(podman, assignment, learner, given, joined)
    else:
        args = environment_args(assignment, learner, data_folder(state, given), joined)
    console.print(f"learner {learner} running ({chosen.value}); Ctrl-C leaves")
    sys.exit(_run(args, client, state, verbose))

"""Seconds from `flops learner join` to the learner's first task.

    python bench/joined_learner.py [--runs N]

Needs root (network namespaces). Starts a fresh embedded stack whose API and
Fleet fronts listen at a site address of this host, submits mnist-sklearn with
2 learners that both join (3 rounds), waits until the job has started its
SuperLink and Fleet front, then starts `flops learner join` on two "devices"
(network namespaces with a veth link to the host, tests/netns.py) at once and
reads each one's output as it comes:

  registered   join -> the job registered its key (the device's key made, the
               join call, the job's next sync, the device's next poll)
  first task   join -> "round 1: train" (its SuperNode and executor started,
               connected through the Fleet front over TLS, the first task
               pulled; the round starts once both are there)

Run N uses a new project each time (the environment is reused after run 1).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from _stack import EXAMPLES, FLOPS, Stack, make_repo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import netns

TOKEN = re.compile(r"^flj_\S+$", re.MULTILINE)


def wait_event(stack: Stack, project_id: str, kind: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["type"] == kind for e in stack.events(project_id)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no {kind} event in {timeout}s: {stack.project(project_id)}")


def run_device(
    machine: netns.Netns,
    args: list[str],
    home: Path,
    marks: dict[str, float],
    started: float,
) -> subprocess.Popen[str]:
    env = {"PATH": os.environ["PATH"], "FLOPS_HOME": str(home)}
    proc = subprocess.Popen(
        machine.command(args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - started
            if line.startswith("registered with job") and "registered" not in marks:
                marks["registered"] = now
            if line.startswith("round 1: train") and "first task" not in marks:
                marks["first task"] = now

    threading.Thread(target=read, daemon=True).start()
    return proc


def one_run(stack: Stack, api_port: str, machines: list[netns.Netns]) -> list[dict]:
    repo = make_repo(
        Path(tempfile.mkdtemp()) / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
    )
    project_id = stack.submit(
        {
            "repo": str(repo),
            "rounds": 3,
            "learners": 2,
            "joined_learners": 2,
            "data_tags": ["digits"],
        }
    )
    tokens = TOKEN.findall(
        stack.flops("project", "enrol", project_id, "--learners", "2")
    )
    wait_event(stack, project_id, "scheduled", 1800)
    data = sorted((stack.home / "data" / "local" / "digits").glob("*.parquet"))
    marks: list[dict[str, float]] = [{}, {}]
    procs = []
    started = time.monotonic()
    for index, (machine, token) in enumerate(zip(machines, tokens, strict=True)):
        args = [
            FLOPS, "learner", "join", project_id, "--token", token,
            "--name", f"device-{index}", "--data", f"digits={data[index]}",
            "--api-url", f"http://{netns.SITE_ADDRESS}:{api_port}",
            "--runner", "environment",
        ]  # fmt: skip
        home = Path(tempfile.mkdtemp(prefix="flops-device-"))
        procs.append(run_device(machine, args, home, marks[index], started))
    project = stack.wait(project_id)
    for proc in procs:
        proc.wait(timeout=120)
    if project["status"] != "succeeded":
        raise RuntimeError(f"the job failed: {project.get('error')}")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if (reason := netns.available()) is not None:
        sys.exit(f"cannot run: {reason}")
    with ExitStack() as scope:
        site = scope.enter_context(netns.site_address("flopsbench0"))
        machines = [scope.enter_context(netns.netns("flops-b")) for _ in range(2)]
        stack = Stack.start({"FLOPS_API_HOST": "0.0.0.0", "FLOPS_FLEET_HOST": site})
        scope.callback(stack.stop)
        api_port = stack.env["FLOPS_API_PORT"]
        stack.push_digits(partitions=2)
        rows = [one_run(stack, api_port, machines) for _ in range(args.runs)]
    print(f"{'run':<6}{'device':<10}{'registered':>12}{'first task':>12}")
    for run, marks in enumerate(rows, 1):
        for device, mark in enumerate(marks):
            print(
                f"{run:<6}{device:<10}{mark.get('registered', float('nan')):>11.2f}s"
                f"{mark.get('first task', float('nan')):>11.2f}s"
            )
    firsts = [m["first task"] for marks in rows for m in marks if "first task" in m]
    if firsts:
        median = statistics.median(firsts)
        print(f"join -> first task, median of {len(firsts)}: {median:.2f}s")


if __name__ == "__main__":
    main()

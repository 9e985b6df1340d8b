"""Seconds per round: the same Flower app on raw Flower and through FLOps.

    python bench/round_overhead.py [--rounds N]

The app is the one FLOps generates for examples/mnist-sklearn (2 learners), so
both sides do identical work per round; the figure is its own `round_seconds`
metric (rounds 2..N, after learners connected). Setups:

  raw-default  flower-superlink + 2 flower-supernode + flwr run, Flower's defaults
               (subprocess isolation: a fresh flwr-clientapp per message)
  raw-tuned    the same with Flower's own knob FLWR_SUPEREXEC_TASK_POLL_INTERVAL=0.05
  flops        `flops project submit`: --isolation process with flops-executor
               (warm forked tasks), 50 ms task polling; TLS and node
               authentication on (the default)
  flops-plain  the same on a second stack with FLOPS_DEV_INSECURE_FLOWER=1
               (plaintext, no node authentication): what TLS costs a round

Every setup runs the user's code in the model worker (flops/worker), from the
user's environment, as FLOps does since the runtime and the user's code got
environments of their own. To compare with the design before it (the user's
code inside Flower's processes), run this script at commit da1affb too.

Then it names the fixed sleeps in Flower that set the floor, by file and line.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _stack import EXAMPLES, Stack, free_port, make_repo

from flops.worker.client import SOCKET_ENV, worker_args

RAW_SETUPS = {
    "raw-default": {},
    "raw-tuned": {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.05"},
}


def round_seconds(client: Any, run_id: str) -> list[float]:
    history = client.get_metric_history(run_id, "round_seconds")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def run_raw(
    name: str,
    extra_env: dict[str, str],
    job: Path,
    envs: tuple[Path, Path],
    stack: Stack,
    rounds: int,
) -> list[float]:
    """The FLOps-generated app on plain Flower processes: Flower from FLOps'
    runtime environment, each actor's model worker from the user's, as FLOps
    runs them (flops/worker), but no flops-executor."""
    runtime_env, user_env = envs
    import mlflow

    client = mlflow.MlflowClient(stack.tracking_uri)
    experiment = client.get_experiment_by_name("bench/raw-flower")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("bench/raw-flower")
    )
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    base_env = {
        **os.environ,
        **extra_env,
        "PATH": f"{runtime_env / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FLOPS_REPO_DIR": str(job / "checkout"),
        "FLWR_TELEMETRY_ENABLED": "0",
    }
    link = free_port()
    procs = []

    def start(
        component: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        log = (work / f"{component}.log").open("wb")
        procs.append(
            subprocess.Popen(
                args,
                env={**base_env, "FLWR_HOME": str(work / component), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def worker(component: str, role: str) -> dict[str, str]:
        socket_path = work / f"{component}.sock"
        start(
            f"{component}-worker",
            worker_args(
                str(user_env / "bin" / "python"),
                socket_path,
                job / "checkout",
                role,
            ),
        )
        return {SOCKET_ENV: str(socket_path)}

    try:
        start(
            "superlink",
            [
                "flower-superlink",
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--port",
                str(link),
            ],
            worker("superlink", "aggregator"),
        )
        time.sleep(4)
        for index in range(2):
            learner = f"learner-{index}"
            data = job / "learners" / learner / "data"
            start(
                learner,
                [
                    "flower-supernode",
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{link}",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f'flops-data-dir="{data}" flops-learner="{learner}"',
                ],
                worker(learner, "learner"),
            )
        cli_home = work / "cli"
        cli_home.mkdir()
        (cli_home / "config.toml").write_text(
            '[superlink]\ndefault = "raw"\n[superlink.raw]\n'
            f'address = "127.0.0.1:{link}"\n'
            "insecure = true\n"
        )
        overrides = cli_home / "overrides.toml"
        overrides.write_text(
            f'flops-mlflow-tracking-uri = "{stack.tracking_uri}"\n'
            f'flops-mlflow-experiment-id = "{experiment_id}"\n'
            f'flops-mlflow-run-id = "{run_id}"\n'
        )
        subprocess.run(
            ["flwr", "run", str(job / "app"), "raw", "--run-config", str(overrides)],
            env={**base_env, "FLWR_HOME": str(cli_home)},
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 60 * rounds + 120
        while len(round_seconds(client, run_id)) < rounds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: rounds did not finish; logs in {work}")
            time.sleep(1)
        return round_seconds(client, run_id)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)


def flower_floors() -> list[str]:
    """Fixed sleeps in the installed Flower that bound a round from below."""
    import flwr
    import flwr.superlink.grid.http_grid as grid
    import flwr.supernode.start_client_internal as supernode

    found = []
    for module, needle, meaning in (
        (
            supernode,
            "time.sleep(3)",
            "SuperNode: idle wait after an empty pull, once per "
            "message (FLOps cannot change it)",
        ),
        (
            supernode,
            "time.sleep(0.5)",
            "SuperNode: reply polling before pushing a result",
        ),
        (
            grid,
            "time.sleep(3)",
            "HttpGrid.send_and_receive: reply polling in the ServerApp "
            "(FLOps' app replaces it with 50 ms, flops/app/grid.py)",
        ),
    ):
        lines, _ = inspect.getsourcelines(module)  # a whole module: line 1 first
        site = Path(inspect.getfile(flwr)).parents[1]
        for number, text in enumerate(lines, start=1):
            if needle in text:
                path = Path(inspect.getfile(module)).relative_to(site)
                found.append(f"{path}:{number}  {needle}  {meaning}")
                break
    return found


def submit(stack: Stack, rounds: int) -> str:
    repo = make_repo(
        Path(tempfile.mkdtemp()) / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
    )
    return stack.submit(
        {"repo": str(repo), "rounds": rounds, "learners": 2, "data_tags": ["digits"]}
    )


def flops_rounds(stack: Stack, rounds: int) -> list[float]:
    import mlflow

    project = stack.wait(submit(stack, rounds))
    client = mlflow.MlflowClient(stack.tracking_uri)
    return round_seconds(client, project["mlflow"]["run_id"])


def summary(values: list[float]) -> str:
    steady = values[1:] or values
    return (
        f"{statistics.mean(steady):6.2f}s mean  "
        f"{statistics.median(steady):6.2f}s median"
        f"  (round 1: {values[0]:.2f}s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    import mlflow

    results: dict[str, list[float]] = {}
    plain = Stack.start({"FLOPS_DEV_INSECURE_FLOWER": "1"})
    try:
        plain.push_digits(partitions=2)
        results["flops-plain"] = flops_rounds(plain, args.rounds)
    finally:
        plain.stop()
    stack = Stack.start()
    try:
        stack.push_digits(partitions=2)
        project_id = submit(stack, args.rounds)
        project = stack.wait(project_id)
        client = mlflow.MlflowClient(stack.tracking_uri)
        results["flops"] = round_seconds(client, project["mlflow"]["run_id"])
        ready = next(
            e for e in stack.events(project_id) if e["type"] == "environment_ready"
        )
        job = stack.home / "jobs" / project_id
        envs = (Path(ready["data"]["runtime"]), Path(ready["data"]["path"]))
        for name, extra in RAW_SETUPS.items():
            results[name] = run_raw(name, extra, job, envs, stack, args.rounds)
    finally:
        stack.stop()

    print(
        f"seconds per round, mnist-sklearn, 2 learners, {args.rounds} rounds "
        "(mean of rounds 2..N)"
    )
    for name in ("raw-default", "raw-tuned", "flops", "flops-plain"):
        print(f"  {name:<12} {summary(results[name])}")
    tls, plaintext = (statistics.mean(results[n][1:]) for n in ("flops", "flops-plain"))
    print(
        f"  TLS + node authentication / plaintext = {tls / plaintext:.3f}x "
        f"({(tls / plaintext - 1) * 100:+.1f}%)"
    )
    fastest_raw = min(statistics.mean(results[n][1:]) for n in RAW_SETUPS)
    flops = statistics.mean(results["flops"][1:])
    print(f"  flops / fastest raw Flower = {flops / fastest_raw:.2f}x")
    print("Flower's fixed waits (flwr " + __import__("flwr").__version__ + "):")
    for line in flower_floors():
        print(f"  {line}")


if __name__ == "__main__":
    main()

"""Bytes crossing the root link per round: hierarchical against classic.

    python bench/root_link_bytes.py [--rounds N]

The same four learners of examples/mnist-sklearn train twice on the local
orchestrator: classic (every learner a node of the root SuperLink) and
hierarchical (two clusters of two learners; the root's nodes are the clusters'
uplinks). The figure is what a link in front of the root SuperLink would carry:
the TCP bytes both ways on every connection a SuperNode holds to the root's
port (kernel counters, `ss -ti`: bytes_acked out, bytes_received in), sampled
through the run, divided by the rounds. The aggregator beside the SuperLink is
not counted (it shares the root's host in every deployment). MLflow's own
`bytes_sent`/`bytes_received` figures (model payload only) are printed beside.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _stack import EXAMPLES, Stack, make_repo

_COUNTER = re.compile(r"\b(bytes_acked|bytes_received):(\d+)")
_PID = re.compile(r"pid=(\d+)")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def root_port(job_dir: str, deadline: float) -> int:
    """The port of the job's root SuperLink (its state file is the job's
    `flwr/superlink/state.db`; a cluster's lives in `flwr/<cluster>-superlink`)."""
    state = f"{job_dir}/flwr/superlink/state.db"
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            line = _cmdline(int(proc.name))
            if "flower-superlink" in line and state in line and "bwrap" not in line:
                return int(line.split("--port ")[1].split()[0])
        time.sleep(0.5)
    raise TimeoutError("no root SuperLink found")


class LinkCounter(threading.Thread):
    """Samples SuperNodes' connections to `port`; keeps each one's last counts."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seen: dict[str, tuple[int, int]] = {}
        self.running = True

    def sample(self) -> None:
        out = subprocess.run(
            ["ss", "-tinpH", "state", "established", f"( dport = :{self.port} )"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines = out.splitlines()
        for head, info in zip(lines[::2], lines[1::2], strict=False):
            pid = _PID.search(head)
            if pid is None or "flower-supernode" not in _cmdline(int(pid.group(1))):
                continue
            key = " ".join(head.split()[2:4])  # local and peer address
            counts = dict(_COUNTER.findall(info))
            self.seen[key] = (
                int(counts.get("bytes_acked", 0)),
                int(counts.get("bytes_received", 0)),
            )

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(0.2)

    def totals(self) -> tuple[int, int]:
        return (
            sum(out for out, _ in self.seen.values()),
            sum(into for _, into in self.seen.values()),
        )


def measure(stack: Stack, config: dict[str, Any]) -> dict[str, float]:
    project_id = stack.submit(config)
    job_dir = str(stack.home / "jobs" / project_id)
    port = root_port(job_dir, time.monotonic() + 600)
    counter = LinkCounter(port)
    counter.start()
    project = stack.wait(project_id)
    counter.running = False
    counter.join()
    sent, received = counter.totals()
    rounds = int(config["rounds"])
    from mlflow import MlflowClient

    client = MlflowClient(stack.tracking_uri)
    run_id = project["mlflow"]["run_id"]
    payload = sum(
        m.value
        for key in ("bytes_sent", "bytes_received")
        for m in client.get_metric_history(run_id, key)
    )
    return {
        "connections": len(counter.seen),
        "to_root_per_round": received / rounds,
        "from_root_per_round": sent / rounds,
        "wire_per_round": (sent + received) / rounds,
        "payload_per_round": payload / rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stack = Stack.start()
    try:
        stack.push_digits(partitions=4)
        # Outside FLOPS_HOME: the service refuses repos inside its own folder.
        repo = make_repo(
            Path(tempfile.mkdtemp()) / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
        )
        common = {"repo": str(repo), "rounds": args.rounds, "data_tags": ["digits"]}
        setups = {
            "classic (4 learners)": {**common, "learners": 4},
            "hierarchical (2 x 2)": {
                **common,
                "mode": "hierarchical",
                "clusters": [
                    {"name": "edge-a", "learners": 2},
                    {"name": "edge-b", "learners": 2},
                ],
            },
        }
        results = {name: measure(stack, config) for name, config in setups.items()}
    finally:
        stack.stop()
    print(f"root link, per round ({args.rounds} rounds, mnist-sklearn):")
    print(
        f"{'setup':22} {'conns':>5} {'to root':>10} {'from root':>10} "
        f"{'wire':>10} {'payload':>10}"
    )
    for name, r in results.items():
        print(
            f"{name:22} {r['connections']:>5.0f} {r['to_root_per_round']:>10.0f} "
            f"{r['from_root_per_round']:>10.0f} {r['wire_per_round']:>10.0f} "
            f"{r['payload_per_round']:>10.0f}"
        )
    classic, hierarchical = results.values()
    print(
        "hierarchical / classic, wire bytes: "
        f"{hierarchical['wire_per_round'] / classic['wire_per_round']:.2f}"
    )


if __name__ == "__main__":
    main()

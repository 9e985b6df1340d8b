"""Submit to registered model, mnist-sklearn, 2 learners x 3 rounds, with stage times.

    python bench/e2e.py [--runs N]

Starts a fresh embedded stack in a temporary FLOPS_HOME. Run 1 builds the
project's environment (cold); later runs reuse it (warm), which is what every
submission after the first with the same dependencies sees. The Oakestra FLOps
addon needs about 12 minutes for this job.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _stack import EXAMPLES, Stack, make_repo, stage_seconds

STAGES = ["clone", "check", "augment", "build", "schedule", "train", "register"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    stack = Stack.start()
    try:
        print(f"flops up (MLflow + API healthy): {stack.up_seconds:.1f}s")
        stack.push_digits(partitions=2)
        rows = []
        for run in range(args.runs):
            repo = make_repo(
                Path(tempfile.mkdtemp()) / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
            )
            started = time.monotonic()
            project_id = stack.submit(
                {"repo": str(repo), "rounds": 3, "learners": 2, "data_tags": ["digits"]}
            )
            project = stack.wait(project_id)
            total = time.monotonic() - started
            assert project["mlflow"]["model_version"], "no registered model"
            label = "cold (env built)" if run == 0 else "warm (env reused)"
            rows.append((label, total, stage_seconds(project)))
    finally:
        stack.stop()

    header = f"{'run':<20}{'total':>8}" + "".join(f"{s:>10}" for s in STAGES)
    print(header)
    for label, total, stages in rows:
        cells = "".join(f"{stages.get(s, 0):>9.1f}s" for s in STAGES)
        print(f"{label:<20}{total:>7.1f}s{cells}")
    warm = [total for label, total, _ in rows if label.startswith("warm")]
    if warm:
        print(
            f"warm median: {statistics.median(warm):.1f}s"
            "  (Oakestra FLOps addon: ~720s)"
        )


if __name__ == "__main__":
    main()

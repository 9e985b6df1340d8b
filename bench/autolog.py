"""What `mlflow.<flavor>.autolog()` in a user's fit_model costs per fit, through FLOps.

    python bench/autolog.py [--rounds N]

MLflow-exported repos often call `mlflow.sklearn.autolog()`. This submits
examples/mnist-sklearn (2 learners) three ways and prints each one's per-fit
seconds as the learners measured them (`fit_seconds`, rounds 2..N):

  plain            the example as it is
  autolog          `mlflow.sklearn.autolog()` at the top of fit_model (the
                   worker's mlflow-skinny)
  autolog-mlflow2  the same with `mlflow==2.12.1` pinned, as an MLflow 2 export
                   pins it (the full package, whose default store is ./mlruns)

and, for each, what autolog wrote where the learner could keep it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _stack import EXAMPLES, Stack, make_repo

AUTOLOG = "        import mlflow\n\n        mlflow.sklearn.autolog()\n"
VARIANTS: dict[str, tuple[bool, str]] = {
    "plain": (False, ""),
    "autolog": (True, ""),
    "autolog-mlflow2": (True, "mlflow==2.12.1\n"),
}


def variant_repo(name: str, autolog: bool, extra_requirements: str) -> Path:
    repo = Path(tempfile.mkdtemp()) / name
    source = EXAMPLES / "mnist-sklearn"
    work = Path(tempfile.mkdtemp()) / "src"
    shutil.copytree(source, work)
    if autolog:
        manager = work / "model_manager.py"
        text = manager.read_text()
        marker = "    def fit_model(self) -> int:\n"
        manager.write_text(text.replace(marker, marker + AUTOLOG, 1))
    requirements = work / "requirements.txt"
    requirements.write_text(requirements.read_text() + extra_requirements)
    return make_repo(repo, work)


def fit_seconds(client: Any, run_id: str) -> list[float]:
    run = client.get_run(run_id)
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
    )
    values: list[float] = []
    for child in children:
        for key in child.data.metrics:
            if key.endswith("fit_seconds"):
                history = client.get_metric_history(child.info.run_id, key)
                values += [m.value for m in history if m.step > 1]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    import mlflow

    stack = Stack.start()
    results: dict[str, list[float]] = {}
    try:
        stack.push_digits(partitions=2)
        client = mlflow.MlflowClient(stack.tracking_uri)
        for name, (autolog, extra) in VARIANTS.items():
            project_id = stack.submit(
                {
                    "repo": str(variant_repo(name, autolog, extra)),
                    "rounds": args.rounds,
                    "learners": 2,
                    "data_tags": ["digits"],
                }
            )
            project = stack.wait(project_id)
            results[name] = fit_seconds(client, project["mlflow"]["run_id"])
    finally:
        stack.stop()
    print(f"seconds per fit, mnist-sklearn, 2 learners, rounds 2..{args.rounds}")
    plain = statistics.mean(results["plain"])
    for name, values in results.items():
        mean = statistics.mean(values)
        print(f"  {name:<16} {mean:6.2f}s mean  (+{mean - plain:.2f}s over plain)")


if __name__ == "__main__":
    main()

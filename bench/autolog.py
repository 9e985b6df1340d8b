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

their seconds per round (`round_seconds`, rounds 2..N), and, for the autolog
variants, whether every round's post-fit metrics and plots reached MLflow
(FLOps computes those after the fit has replied; flops/worker/deferred.py).
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


def round_seconds(client: Any, run_id: str) -> list[float]:
    history = client.get_metric_history(run_id, "round_seconds")
    return [m.value for m in history if m.step > 1]


def post_fit_content(client: Any, run_id: str) -> str:
    """What MLflow's post-fit step logged for learner-0 (metrics, plots), which
    FLOps logs after the fit's reply: rounds that have it / rounds run."""
    run = client.get_run(run_id)
    (child,) = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}' "
        "and tags.`flops.learner` = 'learner-0'",
    )
    metric = client.get_metric_history(child.info.run_id, "training_f1_score")
    plots = 0
    for folder in client.list_artifacts(child.info.run_id, "autolog"):
        path = f"{folder.path}/fit/runs/0/training_confusion_matrix.png"
        plots += any(
            f.path == path
            for f in client.list_artifacts(
                child.info.run_id, f"{folder.path}/fit/runs/0"
            )
        )
    rounds = len(client.get_metric_history(run_id, "round_seconds"))
    return (
        f"training_f1_score {len(metric)}/{rounds}, confusion matrix {plots}/{rounds}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    import mlflow

    stack = Stack.start()
    results: dict[str, list[float]] = {}
    rounds: dict[str, list[float]] = {}
    content: dict[str, str] = {}
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
            run_id = project["mlflow"]["run_id"]
            results[name] = fit_seconds(client, run_id)
            rounds[name] = round_seconds(client, run_id)
            if autolog:
                content[name] = post_fit_content(client, run_id)
    finally:
        stack.stop()
    print(f"seconds per fit, mnist-sklearn, 2 learners, rounds 2..{args.rounds}")
    plain = statistics.mean(results["plain"])
    for name, values in results.items():
        mean = statistics.mean(values)
        print(f"  {name:<16} {mean:6.2f}s mean  (+{mean - plain:.2f}s over plain)")
    print(f"seconds per round, rounds 2..{args.rounds}")
    plain = statistics.mean(rounds["plain"])
    for name, values in rounds.items():
        mean = statistics.mean(values)
        print(f"  {name:<16} {mean:6.2f}s mean  (+{mean - plain:.2f}s over plain)")
    print("what autolog's post-fit step logged (learner-0)")
    for name, text in content.items():
        print(f"  {name:<16} {text}")


if __name__ == "__main__":
    main()

"""What only running the repo can tell: run inside the user's own environment.

`python -m flops.smoke --repo DIR` imports `model_manager`, builds a ModelManager
without data (as the aggregator does), reads its parameters and the model
flavor, and saves that initial model with its MLflow flavor, exactly as the
aggregator saves the trained one: an export that cannot work fails the build,
not the end of training. It prints one JSON line; on failure it prints the
user-facing reason and exits 1, so it is reported before any learner starts.

Only the standard library and the worker's modules are used: this runs on
whatever versions the repo pinned.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from flops import usercode
from flops.errors import FlopsError
from flops.worker.session import Session

RESULT_PREFIX = "FLOPS_SMOKE "
# The reason it failed, as one JSON string: libraries print warnings around it.
ERROR_PREFIX = "FLOPS_SMOKE_ERROR "


def check(repo: Path, flavor: str | None, requirements: list[str]) -> dict[str, Any]:
    usercode.ensure_on_path(repo)
    with tempfile.TemporaryDirectory(prefix="flops-smoke-") as tmp:
        # The smoke test fits nothing: no MLflow content is postponed.
        session = Session(repo, Path(tmp) / "deferred")
        session.op_new({}, [])
        described, _ = session.op_describe({"flavor": flavor}, [])
        try:
            saved, _ = session.op_save_model(
                {
                    "path": str(Path(tmp) / "model"),
                    "flavor": described["flavor"],
                    "requirements": requirements,
                },
                [],
            )
        except FlopsError:
            raise
        except Exception as exc:  # MLflow's or the framework's own error
            raise usercode.UserCodeError(
                "Saving the model with MLflow's "
                f"{described['flavor']} flavor fails: "
                + usercode.describe(exc, "save_model()", repo)
            ) from exc
        saved_files = sorted(p.name for p in (Path(tmp) / "model").iterdir())
    return {**described, "notes": saved["notes"], "saved_files": saved_files}


def check_flower_app(
    repo: Path, serverapp: str, clientapp: str, model_export: str | None
) -> dict[str, Any]:
    """A Flower app's components import, from its repo, and are what they say."""
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    from flops.app.flower_app import load_component

    os.environ[usercode.REPO_DIR_ENV] = str(repo)
    load_component(serverapp, ServerApp)
    load_component(clientapp, ClientApp)
    if model_export:
        hook = load_component(model_export, object)
        if not callable(hook):
            raise FlopsError(f"{model_export} (the model-export hook) is not callable")
    return {"flavor": None, "arrays": 0, "parameter_bytes": 0, "notes": []}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--flavor", default=None)
    parser.add_argument(
        "--requirements", default="[]", help="the repo's requirements, JSON list"
    )
    parser.add_argument(
        "--flower-app",
        nargs=3,
        metavar=("SERVERAPP", "CLIENTAPP", "MODEL_EXPORT"),
        help="check a Flower app's components instead (MODEL_EXPORT may be '')",
    )
    args = parser.parse_args(argv)
    try:
        if args.flower_app:
            server, client, hook = args.flower_app
            result = check_flower_app(args.repo.resolve(), server, client, hook or None)
        else:
            requirements = json.loads(args.requirements)
            result = check(args.repo.resolve(), args.flavor, requirements)
    except FlopsError as err:
        print(ERROR_PREFIX + json.dumps(str(err)), flush=True)
        raise SystemExit(1) from None
    print(RESULT_PREFIX + json.dumps(result))


if __name__ == "__main__":
    main()

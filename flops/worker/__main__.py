"""`python -m flops.worker serve|warm`; see flops/worker/server.py."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path

from flops import usercode
from flops.worker import server


def warm() -> None:
    """Import what tasks import, once, so the environment's bytecode is compiled
    at build time and a broken import fails the build, not the first round."""
    import datasets  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401

    import flops.data
    import flops.worker.session
    import flops_utils.ml_repo_building_blocks  # noqa: F401

    if importlib.util.find_spec("flwr") is not None:
        # A Flower app's environment: its executor and tasks run from here.
        import flwr.superlink.runtime.run_serverapp
        import flwr.supernode.runtime.run_clientapp  # noqa: F401

        import flops.app.flower_app  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flops.worker", description=__doc__)
    parser.add_argument("command", choices=["serve", "warm"])
    parser.add_argument("--socket", type=Path)
    parser.add_argument(
        "--repo", type=Path, default=os.environ.get(usercode.REPO_DIR_ENV)
    )
    parser.add_argument("--role", choices=["learner", "aggregator"], default="learner")
    args = parser.parse_args(argv)
    if args.command == "warm":
        warm()
        return
    if args.socket is None or args.repo is None:
        parser.error("serve needs --socket and --repo")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    repo = Path(args.repo).resolve()
    os.environ[usercode.REPO_DIR_ENV] = str(repo)
    server.serve(args.socket, repo, args.role)


if __name__ == "__main__":
    main()

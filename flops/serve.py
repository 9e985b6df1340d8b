"""The inference image's entrypoint: serve an MLflow model on `/invocations`.

`python3 -m flops.serve --model DIR [--host H] [--port P]` loads the model with
`mlflow.pyfunc` and serves MLflow's own scoring app (the same routes and input
formats as `mlflow models serve`: `/ping`, `/health`, `/version`,
`/invocations` with `dataframe_split`, `dataframe_records`, `instances` or
`inputs`) under uvicorn, without MLflow's environment management: the image
already holds the model's dependencies.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_PORT = 8080
MODEL_DIR = "/opt/ml/model"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="flops.serve", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default=os.environ.get("FLOPS_MODEL_DIR", MODEL_DIR))
    # The container's own interfaces: publishing decides who reaches it.
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(mlflow.pyfunc.load_model(args.model))
    if hasattr(app, "wsgi_app"):
        # MLflow 2's scoring app is Flask (a model saved by a repo pinning
        # mlflow 2.x is served by that MLflow); werkzeug comes with Flask.
        from werkzeug.serving import run_simple

        run_simple(args.host, args.port, app, threaded=True)
        return
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()

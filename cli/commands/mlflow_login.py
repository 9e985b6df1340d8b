"""`flops mlflow credentials`: your MLflow user, for the MLflow client and UI."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer

from flops_cli.client import ApiClient

app = typer.Typer(help="Your MLflow access.", no_args_is_help=True)


@app.command("credentials")
def credentials(
    fmt: Annotated[str, typer.Option("--format", help="env or json")] = "env",
) -> None:
    """Print a new MLflow password for you (the previous one stops working).

    `eval "$(flops mlflow credentials)"` sets MLFLOW_TRACKING_URI, _USERNAME and
    _PASSWORD for this shell; the MLflow UI asks for the same user and password.
    """
    issued = ApiClient().request("POST", "/api/mlflow/credentials")
    if fmt == "json":
        typer.echo(json.dumps(issued, indent=2))
        return
    for name, key in (
        ("MLFLOW_TRACKING_URI", "tracking_uri"),
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        typer.echo(f"export {name}={shlex.quote(str(issued[key]))}")

"""The `flops` command. Errors from the library or the API are shown as one
message (and a hint) with a non-zero exit code, never as a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from flops.errors import FlopsError
from flops_cli.commands import (
    compose,
    data,
    images,
    learner,
    mlflow_login,
    project,
    stack,
    token,
)
from flops_cli.commands.init import init

app = typer.Typer(
    help="FLOps: federated learning from an ordinary ML git repository.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(stack.up)
app.command()(stack.down)
app.command()(stack.status)
app.command()(init)
app.add_typer(project.app, name="project")
app.add_typer(learner.app, name="learner")
app.add_typer(data.app, name="data")
app.add_typer(token.app, name="token")
app.add_typer(images.app, name="images")
app.add_typer(compose.app, name="compose")
app.add_typer(mlflow_login.app, name="mlflow")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except FlopsError as err:
        err_console.print(f"[red]error:[/red] {escape(err.message)}")
        if err.hint:
            err_console.print(f"[dim]{escape(err.hint)}[/dim]")
        if "project_id" in err.detail:
            err_console.print(
                f"recorded as failed project {escape(err.detail['project_id'])}"
            )
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

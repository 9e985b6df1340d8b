"""`flops data push|list`: learner data under tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flops_cli.client import ApiClient

app = typer.Typer(help="Push and list learner data.", no_args_is_help=True)
console = Console(soft_wrap=True)


@app.command("push")
def push(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="A Parquet file"
        ),
    ],
    tag: Annotated[str, typer.Option("--tag", "-t", help="Data tag projects train on")],
    partitions: Annotated[
        int, typer.Option("--partitions", "-p", min=1, help="One per learner")
    ] = 1,
) -> None:
    """Upload a Parquet file and split it into one partition per learner."""
    dataset = ApiClient().push_data(file, tag, partitions)
    console.print(
        f"pushed [bold]{escape(dataset['tag'])}[/bold]: {dataset['rows']} rows, "
        f"{dataset['partitions']} partitions, columns "
        + escape(", ".join(dataset["columns"]))
    )


@app.command("list")
def list_(
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """The data tags you pushed."""
    rows = ApiClient().datasets()
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("tag", "partitions", "rows", "columns", "updated")
    for d in rows:
        table.add_row(
            escape(d["tag"]),
            str(d["partitions"]),
            str(d["rows"]),
            escape(", ".join(d["columns"])),
            escape(d["updated_at"][:19]),
        )
    console.print(table)

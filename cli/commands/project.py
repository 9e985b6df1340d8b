"""`flops project submit|list|show|cancel|undeploy`, and the learners that join
a project from their owners' machines: `enrol`, `learners`, `revoke`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flops.config import merge_configs, parse_assignment, read_toml
from flops_cli import display
from flops_cli.client import ApiClient

app = typer.Typer(
    help="Submit and follow federated learning projects.", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)

EXIT_FAILED = 1
EXIT_CANCELLED = 3


class Format(StrEnum):
    text = "text"
    json = "json"


def _source(source: str) -> str:
    """Local paths are sent absolute: the service resolves them, not this shell."""
    if "://" in source or ("@" in source and ":" in source.split("@", 1)[1]):
        return source
    return str(Path(source).expanduser().resolve())


def build_config(
    source: str,
    config_file: Path | None,
    flags: dict[str, Any],
) -> dict[str, Any]:
    """--config file first, explicit flags over it; unset flags are not sent."""
    layers = [read_toml(config_file)] if config_file else []
    given = {key: value for key, value in flags.items() if value not in (None, [])}
    return merge_configs(*layers, given, {"repo": _source(source)})


def exit_code(status: str) -> int:
    return {"succeeded": 0, "cancelled": EXIT_CANCELLED}.get(status, EXIT_FAILED)


def follow(client: ApiClient, project_id: str, quiet: bool = False) -> dict[str, Any]:
    """Print the job's progress until it ends; return the final project."""
    for kind, payload in client.follow(project_id):
        if kind == "end":
            break
        line = display.render_event(kind, payload)
        if line and not quiet:
            console.print(line)
    return client.project(project_id)


@app.command("submit")
def submit(
    source: Annotated[
        str, typer.Argument(help="git URL, file:// URL or local path of a git repo")
    ],
    ref: Annotated[str | None, typer.Option(help="branch, tag or commit")] = None,
    rounds: Annotated[int | None, typer.Option(help="training rounds")] = None,
    learners: Annotated[
        int | None, typer.Option(help="learners (min available)")
    ] = None,
    joined_learners: Annotated[
        int | None,
        typer.Option(help="how many of the learners join from their owners' machines"),
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="fedavg, fedprox, fedadam, ...")
    ] = None,
    data_tag: Annotated[
        list[str] | None, typer.Option("--data-tag", help="repeatable")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", exists=True, dir_okay=False, help="flops.toml"),
    ] = None,
    orchestrator: Annotated[
        str | None, typer.Option(help="local (default), ...")
    ] = None,
    app_config: Annotated[
        list[str] | None,
        typer.Option(
            "--app-config",
            help="a Flower app's run config value, KEY=VALUE (repeatable)",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="project name (default: repo name)")
    ] = None,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="follow until the end")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", help="text or json")] = Format.text,
) -> None:
    """Submit an ML repo for federated training; prints the project id."""
    body = build_config(
        source,
        config,
        {
            "ref": ref,
            "rounds": rounds,
            "learners": learners,
            "joined_learners": joined_learners,
            "strategy": strategy,
            "data_tags": data_tag,
            "orchestrator": orchestrator,
            "name": name,
            "app_config": dict(parse_assignment(a) for a in app_config or []) or None,
        },
    )
    client = ApiClient()
    project = client.submit(body)
    if not follow_:
        if fmt is Format.json:
            typer.echo(json.dumps(project, indent=2))
        else:
            typer.echo(project["id"])
        return
    if fmt is Format.text:
        console.print(
            f"project {display.text(project['id'])} ({display.text(project['name'])}) "
            "submitted"
        )
    final = follow(client, project["id"], quiet=fmt is Format.json)
    if fmt is Format.json:
        typer.echo(json.dumps(final, indent=2))
    else:
        for line in display.project_lines(final):
            console.print(line)
    raise typer.Exit(exit_code(final["status"]))


@app.command("list")
def list_(fmt: Annotated[Format, typer.Option("--format")] = Format.text) -> None:
    """Your projects, newest first."""
    projects = ApiClient().projects()
    if fmt is Format.json:
        typer.echo(json.dumps(projects, indent=2))
        return
    table = Table("id", "name", "status", "stage", "created (UTC)")
    for project in projects:
        table.add_row(*display.project_row(project))
    console.print(table)


@app.command("show")
def show(
    project_id: str,
    fmt: Annotated[Format, typer.Option("--format")] = Format.text,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="follow until the end")
    ] = False,
) -> None:
    """One project: status, stages, commit, MLflow run and model, error."""
    client = ApiClient()
    project = (
        follow(client, project_id, quiet=fmt is Format.json)
        if follow_
        else client.project(project_id)
    )
    if fmt is Format.json:
        typer.echo(json.dumps(project, indent=2))
    else:
        for line in display.project_lines(project):
            console.print(line)
    if follow_:
        raise typer.Exit(exit_code(project["status"]))


@app.command("cancel")
def cancel(project_id: str) -> None:
    """Stop a queued or running project and its processes."""
    project = ApiClient().cancel(project_id)
    console.print(
        f"cancelling {display.text(project['id'])} "
        f"(status {display.text(project['status'])})"
    )


@app.command("undeploy")
def undeploy(project_id: str) -> None:
    """Stop the project's inference server."""
    project = ApiClient().stop_server(project_id)
    server = project.get("server") or {}
    console.print(
        f"inference server {display.text(server.get('url'))} of "
        f"{display.text(project['id'])} stopped"
    )


@app.command("enrol")
def enrol(
    project_id: str,
    learners: Annotated[int, typer.Option(help="tokens to make, one per learner")] = 1,
) -> None:
    """Enrolment tokens for learners that join from their owners' machines."""
    client = ApiClient()
    result = client.enrol(project_id, learners)
    full_id = display.text(result["project_id"])
    console.print(
        f"{len(result['tokens'])} enrolment token(s) for project {full_id}, valid "
        f"until {display.text(result['expires_at'])} UTC; each admits one learner "
        "and is shown only now:"
    )
    for token in result["tokens"]:
        typer.echo(token)
    console.print(
        f"On the learner's machine: flops learner join {full_id} --token TOKEN "
        f"--data TAG=PATH --api-url {display.text(client.base_url)}"
    )


@app.command("learners")
def learners_(
    project_id: str, fmt: Annotated[Format, typer.Option("--format")] = Format.text
) -> None:
    """Who joined the project (name, address, last seen) and unused tokens."""
    rows = ApiClient().learners(project_id)
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("learner", "status", "address", "joined (UTC)", "last seen (UTC)")
    for row in rows:
        table.add_row(
            *(
                display.text(row.get(key) or "-")
                for key in ("learner", "status", "address", "joined_at", "last_seen")
            )
        )
    console.print(table)


@app.command("revoke")
def revoke(project_id: str, learner: str) -> None:
    """Revoke a joined learner: its key is refused from its next request on."""
    row = ApiClient().revoke(project_id, learner)
    name, status = display.text(row["learner"]), display.text(row["status"])
    console.print(f"learner {name} revoked ({status})")

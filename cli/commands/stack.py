"""`flops up`, `flops down`, `flops status`: the embedded stack on this machine."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)


def _embedded() -> Any:
    try:
        from flops_management import embedded
        from flops_management.settings import Settings
    except ImportError as err:
        raise typer.BadParameter(
            f"The management service is not installed here ({err}); "
            "install it with `pip install 'flops[all]'`."
        ) from err
    return embedded, Settings()


def up() -> None:
    """Start the management API and an MLflow server on loopback (idempotent)."""
    embedded, settings = _embedded()
    urls = embedded.up(settings, progress=lambda msg: console.print(f"  {escape(msg)}"))
    console.print(f"[green]FLOps is up[/green] (state in {escape(str(settings.home))})")
    console.print(
        escape(
            f"  management API  {urls['api']}  (schema: {urls['api']}/api/openapi.json)"
        )
    )
    console.print(escape(f"  MLflow          {urls['mlflow']}"))
    if "registry" in urls:
        console.print(escape(f"  registry        {urls['registry']}"))
    if "podman" in urls:
        console.print(escape(f"  Docker API      {urls['podman']}  (Podman)"))
    console.print(escape(f"  token           {settings.token_file}"))


def down() -> None:
    """Stop the embedded stack (running jobs are stopped and marked failed)."""
    embedded, settings = _embedded()
    embedded.down(settings, progress=lambda msg: console.print(f"  {escape(msg)}"))


def status() -> None:
    """Say what of the embedded stack runs."""
    embedded, settings = _embedded()
    all_up = True
    for state in embedded.status(settings):
        if state.healthy:
            console.print(
                "  [green]up[/green]       "
                + escape(f"{state.name:<7} {state.url}  (pid {state.pid})")
            )
        elif state.running:
            all_up = False
            console.print(
                "  [yellow]starting[/yellow] "
                + escape(f"{state.name:<7} {state.url}  (pid {state.pid})")
            )
        else:
            all_up = False
            console.print(
                "  [red]down[/red]     " + escape(f"{state.name:<7} {state.url}")
            )
    if not all_up:
        raise typer.Exit(1)

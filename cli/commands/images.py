"""`flops images bootstrap`: base images for this host's builds, per platform.

Like `flops up`, this works on the host itself (Buildah, the registry), so it
calls the management library directly instead of the API.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flops_cli.commands.stack import _embedded

app = typer.Typer(help="Base images for FL-actor and inference images.")
console = Console(soft_wrap=True)


@app.command()
def bootstrap(
    platform: Annotated[
        str,
        typer.Option(help="Comma-separated platforms: linux/amd64,linux/arm64"),
    ] = "linux/amd64",
) -> None:
    """Provide each platform's base image: registry, pull, or debootstrap."""
    _, settings = _embedded()
    from flops_management.images.base import BaseImages
    from flops_management.images.registry import Registry

    started = time.monotonic()
    bases = BaseImages(
        settings,
        Registry.from_settings(settings),
        lambda line: console.print(
            f"  {time.monotonic() - started:6.1f}s  {escape(line)}"
        ),
    )
    for name in [p.strip() for p in platform.split(",") if p.strip()]:
        reference = bases.ensure(name)
        console.print(f"[green]{escape(name)}[/green]  {escape(reference)}")

"""`flops compose prepare`: what docker-compose.yml needs before its first build.

Like `flops images bootstrap`, this works on the host (container storage, the
checkout) and calls the management library directly instead of the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="The docker compose install beside your orchestrator.")
console = Console(soft_wrap=True)


@app.command()
def prepare(
    checkout: Annotated[
        Path, typer.Option(help="The FLOps checkout holding docker-compose.yml.")
    ] = Path(),
    host: Annotated[
        list[str],
        typer.Option(help="Another name or address the registry is reached by."),
    ] = [],  # noqa: B006 (typer reads the default, never mutates it)
    setting: Annotated[
        list[str],
        typer.Option(help="KEY=VALUE for .env, over what is stored there."),
    ] = [],  # noqa: B006
    test_store: Annotated[
        bool,
        typer.Option(help="Also the SecantusDB store of docker-compose.test.yml."),
    ] = False,
    packages: Annotated[
        bool,
        typer.Option(
            help="Install the images' packages (--no-packages: settings only)."
        ),
    ] = True,
) -> None:
    """Write .env (secrets made once), the registry's certificates and the
    images' Python packages."""
    from flops.errors import ConfigError
    from flops_management.compose_install import ComposePreparation
    from flops_management.settings import Settings

    overrides = {}
    for item in setting:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--setting {item!r} is not KEY=VALUE.")
        overrides[key] = value
    preparation = ComposePreparation(
        Settings(), checkout.resolve(), lambda line: console.print(escape(line))
    )
    preparation.run(host, overrides, test_store, packages)
    console.print(
        "[green]ready[/green]: `docker compose up -d --build` "
        "(or `podman-compose up -d --build`) in "
        f"{escape(str(checkout.resolve()))}"
    )

"""`flops token create`: tokens for tenants (admin only)."""

from __future__ import annotations

from typing import Annotated

import typer

from flops_cli.client import ApiClient

app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="Tenant the token acts for")],
    name: Annotated[str, typer.Option(help="A label for the token")] = "",
    admin: Annotated[bool, typer.Option(help="May create tokens itself")] = False,
) -> None:
    """Print a new token; it is shown once and only its hash is kept."""
    result = ApiClient().create_token(tenant, name, admin)
    typer.echo(result["token"])

"""`flops init DIR`: a new ML repo from the template, ready to submit."""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flops.errors import ConfigError

console = Console(soft_wrap=True)

TEMPLATE = "ml-repo"


def write_template(dest: Path, force: bool = False) -> list[Path]:
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ConfigError(
            f"{dest} is not empty.", hint="Use --force to write into it anyway."
        )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with as_file(files("flops_templates") / TEMPLATE) as template:
        for path in sorted(Path(template).rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            target = dest / path.relative_to(template)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
    return written


def init(
    directory: Annotated[Path, typer.Argument(help="where to create the repo")],
    force: Annotated[
        bool, typer.Option(help="write into a non-empty directory")
    ] = False,
) -> None:
    """Write a new ML repo that follows the FLOps contract."""
    for path in write_template(directory, force):
        console.print(f"  wrote {escape(str(path))}")
    console.print(
        f"Next: cd {directory} && git init && git add -A && git commit -m init, "
        f"then `flops project submit {directory} --data-tag TAG`"
    )

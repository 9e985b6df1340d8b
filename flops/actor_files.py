"""An actor's secret files handed over in its environment, for orchestrators
that have no secret store to mount (Oakestra: an SLA carries `environment`
and nothing else).

The service puts each file in a variable `FLOPS_FILE_<NAME>` (base64, NAME the
file's name upper-cased with `.` as `_`: `FLOPS_FILE_CA_CRT` is `ca.crt`). The
actor writes them into a folder only it can read and *removes the variables*
before it starts anything, so the tenant's code it runs (the executor, the
model worker) never finds the key in its environment. The flags that name the
files (`--tls-dir`, `--node-key`) then point into that folder.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

PREFIX = "FLOPS_FILE_"
_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ActorFilesError(ValueError):
    """A variable that is not a file FLOps handed over."""


def variable(file_name: str) -> str:
    """The variable that carries `file_name` (`ca.crt` -> FLOPS_FILE_CA_CRT)."""
    if not _FILE_NAME.match(file_name) or "_" in file_name:
        raise ActorFilesError(f"{file_name!r} cannot travel in a variable")
    return PREFIX + file_name.upper().replace(".", "_").replace("-", "__")


def file_name(variable_name: str) -> str:
    """The inverse of `variable`."""
    stem = variable_name.removeprefix(PREFIX)
    return stem.replace("__", "-").replace("_", ".").lower()


def encode(files: Mapping[str, bytes]) -> dict[str, str]:
    """The variables that carry `files` (name -> content)."""
    return {
        variable(name): base64.b64encode(content).decode()
        for name, content in sorted(files.items())
    }


def materialise(folder: Path, environ: MutableMapping[str, str]) -> list[Path]:
    """Write every FLOPS_FILE_* variable of `environ` into `folder` (created
    0700, files 0600) and remove the variables; the files written."""
    names = sorted(name for name in environ if name.startswith(PREFIX))
    if not names:
        return []
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    written = []
    for name in names:
        try:
            content = base64.b64decode(environ.pop(name), validate=True)
        except (binascii.Error, ValueError) as err:
            raise ActorFilesError(f"{name} is not base64: {err}") from None
        path = folder / file_name(name)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
        written.append(path)
    return written

"""What a forked task imported, imported by the process it was forked from.

The model worker and the executor fork a fresh process per task from one that
holds the imports warm. A task that imports more on its way (MLflow's logging
paths, a framework's lazy submodules, `datasets`' builders) would pay for it in
every task; instead each task writes down the modules it added, and the parent
imports them once it has reaped the task, so later tasks start with them. The
first task pays for an import, not every task. Standard library only: it runs
in the user's environment too.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path


def _file(folder: Path, pid: int) -> Path:
    return folder / f"imported-{pid}.txt"


def record(folder: Path, before: set[str]) -> None:
    """In a task's process, as it ends: the modules it imported beyond `before`
    (the parent's, at the fork)."""
    new = sorted(set(sys.modules) - before)
    with contextlib.suppress(OSError):
        _file(folder, os.getpid()).write_text("\n".join(new))


def learn(folder: Path, pid: int) -> None:
    """In the parent, once task `pid` ended: import what it imported."""
    path = _file(folder, pid)
    try:
        names = path.read_text().split()
        path.unlink()
    except OSError:
        return
    for name in names:
        if name not in sys.modules and name != "__main__":
            with contextlib.suppress(Exception):
                importlib.import_module(name)

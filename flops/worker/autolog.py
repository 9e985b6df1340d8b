"""The repo's own autolog calls, prepared in the model worker before it forks.

MLflow-exported repos call `mlflow.<flavor>.autolog()` in their training code.
What that costs each task (the worker forks a fresh process per task) is the
import of mlflow and autolog patching the framework, a second for every
scikit-learn estimator; both are done once here, in the worker, from the
repo's source read with `ast`, and the repo's own call then only switches the
prepared integration on. What the calls log is captured per task
(`flops.worker.capture`); the benchmark is `bench/autolog.py`.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_MENTION = re.compile(r"\bmlflow\b")
_SKIPPED_DIRS = {".git", ".venv", "venv", "__pycache__", "node_modules"}


@dataclass(frozen=True)
class AutologCall:
    """A `mlflow[.<flavor>].autolog(...)` call in the repo's code; `kwargs` when
    every argument is a literal keyword (so the worker can make it itself)."""

    module: str
    kwargs: tuple[tuple[str, Any], ...] | None


def _autolog_module(func: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if parts[:1] != ["autolog"] or not isinstance(func, ast.Name):
        return None
    if func.id != "mlflow":
        return None
    return ".".join(["mlflow", *reversed(parts[1:])])


def _literal_kwargs(call: ast.Call) -> tuple[tuple[str, Any], ...] | None:
    if call.args or any(k.arg is None for k in call.keywords):
        return None
    try:
        return tuple((str(k.arg), ast.literal_eval(k.value)) for k in call.keywords)
    except ValueError:
        return None


def autolog_calls(repo: Path) -> tuple[bool, list[AutologCall]]:
    """(whether the repo's code names mlflow at all, its autolog calls)."""
    mentions = False
    calls: list[AutologCall] = []
    for path in sorted(repo.rglob("*.py")):
        if _SKIPPED_DIRS & set(path.relative_to(repo).parts):
            continue
        try:
            text = path.read_text()
            if not _MENTION.search(text):
                continue
            mentions = True
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (module := _autolog_module(node.func)):
                call = AutologCall(module, _literal_kwargs(node))
                if call not in calls:
                    calls.append(call)
    return mentions, calls


def preload(repo: Path) -> None:
    """Before the worker forks: import mlflow when the repo's code names it, and
    prepare the repo's literal flavor autolog calls (`_prepare`), so that no
    task pays for the import or for autolog patching its framework (a second
    of patching every scikit-learn estimator, in every task's process)."""
    mentions, calls = autolog_calls(repo)
    if not mentions:
        return
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        importlib.import_module("mlflow")
    except ImportError:
        return  # the task's own import will say so
    # MLflow maps every installed package to its modules (seconds: it reads
    # each distribution's file list) the first time a model is logged, to warn
    # about mismatched requirements; a cache it fills once, here, not per task.
    with contextlib.suppress(Exception):
        requirements_utils: Any = importlib.import_module(
            "mlflow.utils.requirements_utils"
        )
        requirements_utils._init_packages_to_modules_map()
    for call in calls:
        try:
            module: Any = importlib.import_module(call.module)
            if call.kwargs is not None and call.module != "mlflow":
                _prepare(module, dict(call.kwargs))
        except Exception as exc:  # the task makes the same call and reports it
            logger.warning("Could not prepare %s.autolog: %s", call.module, exc)


def _prepare(module: Any, kwargs: dict[str, Any]) -> None:
    """Make `module.autolog(**kwargs)` here, then switch it off again without
    undoing its patches (patched methods pass through while an integration is
    disabled), and have the repo's own identical call switch it back on: the
    code logs exactly what it logged before, from where it calls autolog."""
    from mlflow.utils import autologging_utils

    name = getattr(module.autolog, "integration_name", None)
    configs = autologging_utils.AUTOLOGGING_INTEGRATIONS
    if name is None:
        return
    module.autolog(**kwargs)
    enabled = dict(configs[name])
    configs[name] = {**enabled, "disable": True}

    def enable() -> None:
        configs[name] = dict(enabled)

    module.autolog = _once(module.autolog, kwargs, enable)


def _once(autolog: Any, prepared: dict[str, Any], enable: Any) -> Any:
    """`autolog`, whose call with the prepared arguments only switches the
    prepared integration on; any other call (and every one after it) is made."""

    @functools.wraps(autolog)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal prepared
        if not args and kwargs == prepared:
            enable()
            return None
        prepared = {"<changed>": True}
        return autolog(*args, **kwargs)

    return wrapper

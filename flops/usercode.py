"""Loading the user's ModelManager and calling it with errors that point at their code.

The repo lives outside the generated Flower app (nothing in it is overwritten); its
directory reaches actors as FLOPS_REPO_DIR and goes onto `sys.path`, so the repo's
own `from data_manager import DataManager` works as it does on the user's laptop.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flops.errors import FlopsError

REPO_DIR_ENV = "FLOPS_REPO_DIR"
MODEL_MODULE = "model_manager"
MODEL_CLASS = "ModelManager"


class UserCodeError(FlopsError):
    """The user's code raised; the message names the method and their file/line."""


def repo_dir() -> Path:
    return Path(os.environ.get(REPO_DIR_ENV) or Path.cwd()).resolve()


def ensure_on_path(repo: Path) -> None:
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))


def _where(exc: BaseException, repo: Path) -> str:
    """The innermost frame of the traceback that lies in the user's repo."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        path = Path(frame.filename)
        if path.is_relative_to(repo):
            return f" ({path.relative_to(repo)} line {frame.lineno})"
    return ""


def describe(exc: BaseException, call: str, repo: Path | None = None) -> str:
    """`fit_model() raised ValueError: boom (model_manager.py line 42)`."""
    root = repo or repo_dir()
    return f"{call} raised {type(exc).__name__}: {exc}{_where(exc, root)}"


def call(func: Callable[..., Any], label: str, *args: Any) -> Any:
    """Call user code; wrap any exception in a UserCodeError describing it."""
    try:
        return func(*args)
    except FlopsError:
        raise
    except Exception as exc:  # user code may raise anything
        raise UserCodeError(describe(exc, label)) from exc


def load_model_manager_class(repo: Path | None = None) -> type[Any]:
    root = repo or repo_dir()
    ensure_on_path(root)
    try:
        module = importlib.import_module(MODEL_MODULE)
    except Exception as exc:
        raise UserCodeError(describe(exc, f"import {MODEL_MODULE}", root)) from exc
    cls = getattr(module, MODEL_CLASS, None)
    if not isinstance(cls, type):
        raise UserCodeError(f"{MODEL_MODULE}.py defines no class {MODEL_CLASS}")
    return cls


def new_model_manager(repo: Path | None = None) -> Any:
    cls = load_model_manager_class(repo)
    return call(cls, f"{MODEL_CLASS}()")


def get_parameters(manager: Any) -> list[np.ndarray]:
    """The model's parameters as NumPy arrays, with a clear error when they are not."""
    params = call(manager.get_model_parameters, "get_model_parameters()")
    if not isinstance(params, list | tuple):
        raise UserCodeError(
            "get_model_parameters() must return a list of NumPy arrays, "
            f"got {type(params).__name__}"
        )
    arrays = []
    for index, value in enumerate(params):
        if hasattr(value, "detach"):  # a torch tensor: accept it, convert it
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.dtype == object:
            raise UserCodeError(
                f"get_model_parameters()[{index}] is not numeric "
                f"({type(value).__name__})"
            )
        arrays.append(array)
    return arrays

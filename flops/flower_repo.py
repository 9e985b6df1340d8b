"""A Flower app repo (`[tool.flwr.app]` in pyproject.toml), read without importing it.

FLOps runs such an app as it is: its own ServerApp, ClientApp and strategy, in an
environment of its own dependencies with FLOps' Flower version (the app's tasks
talk to FLOps' SuperLink and SuperNodes, so the versions must be one). What FLOps
adds is around the app, never in it (`flops.app.flower_app`): each learner's node
config, MLflow tracking, events, and an optional model export hook:

    [tool.flops]
    model-export = "mypackage.export:save_model"   # save_model(arrays, path)

which, given the final `ArrayRecord` and a folder, saves an MLflow model there
with any flavor; with it the model is registered and gets an inference image.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from flops.errors import ContractError
from flops.repo_files import RepoPathError, RepoRoot

PYPROJECT = "pyproject.toml"
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Run config values Flower accepts (TOML scalars); FLOps' own keys start so.
ConfigValue = bool | int | float | str
FLOPS_KEY_PREFIX = "flops-"
ROUNDS_KEY = "num-server-rounds"
# Flower's Ray simulation engine: FLOps runs apps on its deployment runtime.
SIMULATION_EXTRA = "simulation"


@dataclass(frozen=True)
class FlowerApp:
    """What FLOps needs of a Flower app's pyproject.toml."""

    serverapp: str  # "module:attribute"
    clientapp: str
    config: dict[str, ConfigValue] = field(default_factory=dict)
    model_export: str | None = None


def is_flower_app(root: RepoRoot) -> bool:
    """The repo declares a Flower app (its pyproject has [tool.flwr.app])."""
    if not root.is_file(PYPROJECT):
        return False
    try:
        data = tomllib.loads(root.read_text(PYPROJECT))
    except (tomllib.TOMLDecodeError, RepoPathError):
        return False
    return isinstance(data.get("tool", {}).get("flwr", {}).get("app"), dict)


def _module_file(root: RepoRoot, ref: str) -> str | None:
    module = ref.split(":")[0].replace(".", "/")
    for candidate in (f"{module}.py", f"{module}/__init__.py"):
        try:
            if root.is_file(candidate):
                return candidate
        except RepoPathError:
            return None
    return None


def _ref(root: RepoRoot, value: Any, key: str, problems: list[str]) -> str:
    if not isinstance(value, str) or not _REF.match(value):
        problems.append(
            f"{PYPROJECT}: {key} must be 'module:attribute' "
            f"(e.g. 'myapp.server_app:app'), got {value!r}"
        )
        return ""
    if _module_file(root, value) is None:
        problems.append(
            f"{PYPROJECT}: {key} = '{value}' names a module that is not in the repo "
            f"({value.split(':')[0].replace('.', '/')}.py)"
        )
    return value


def read_flower_app(root: RepoRoot) -> FlowerApp:
    """The app's components, run config and FLOps hook; ContractError lists
    every problem."""
    data = tomllib.loads(root.read_text(PYPROJECT))
    app = data["tool"]["flwr"]["app"]
    problems: list[str] = []
    components = app.get("components")
    if not isinstance(components, dict):
        problems.append(
            f"{PYPROJECT}: [tool.flwr.app.components] is missing (serverapp, clientapp)"
        )
        components = {}
    serverapp = _ref(
        root,
        components.get("serverapp"),
        "tool.flwr.app.components.serverapp",
        problems,
    )
    clientapp = _ref(
        root,
        components.get("clientapp"),
        "tool.flwr.app.components.clientapp",
        problems,
    )
    config = app.get("config", {})
    if not isinstance(config, dict):
        problems.append(f"{PYPROJECT}: [tool.flwr.app.config] must be a table")
        config = {}
    for key, value in config.items():
        if key.startswith(FLOPS_KEY_PREFIX):
            problems.append(
                f"{PYPROJECT}: run config key '{key}' is reserved for FLOps "
                f"(keys starting with '{FLOPS_KEY_PREFIX}'); rename it"
            )
        if isinstance(value, dict | list):
            problems.append(
                f"{PYPROJECT}: run config key '{key}' holds a table or list; "
                "Flower's run config takes strings, numbers and booleans"
            )
    hook = data.get("tool", {}).get("flops", {}).get("model-export")
    if hook is not None:
        hook = _ref(root, hook, "tool.flops.model-export", problems)
    if problems:
        raise ContractError(problems)
    return FlowerApp(serverapp, clientapp, dict(config), hook)


def runtime_requirements(
    requirements: tuple[str, ...], flwr_version: str
) -> tuple[list[str], list[str]]:
    """(the app's requirements as FLOps installs them, notes on what changed).

    Flower is pinned to FLOps' own version (its SuperLink and SuperNodes run the
    app's tasks); the `simulation` extra (Ray) is left out, since FLOps runs the
    app on Flower's deployment runtime.
    """
    kept: list[str] = []
    notes: list[str] = []
    for spec in requirements:
        req = Requirement(spec)
        if canonicalize_name(req.name) != "flwr":
            kept.append(spec)
            continue
        if req.specifier and not req.specifier.contains(flwr_version, prereleases=True):
            notes.append(
                f"the app asks for {spec}; FLOps runs Flower {flwr_version}, whose "
                "SuperLink and SuperNodes run the app: it is installed instead. "
                f"Change the requirement to admit {flwr_version} if the app "
                "depends on an older API."
            )
        elif SIMULATION_EXTRA in req.extras:
            notes.append(
                f"{spec}: the '{SIMULATION_EXTRA}' extra (Ray) is left out; FLOps "
                "runs the app on Flower's deployment runtime"
            )
    kept.append(f"flwr=={flwr_version}")
    return kept, notes


def merged_config(
    app: FlowerApp, overrides: dict[str, ConfigValue]
) -> dict[str, ConfigValue]:
    """The app's run config with the project's overrides; an override of a key
    the app does not declare is an error naming the ones it does (Flower itself
    refuses undeclared keys)."""
    unknown = sorted(set(overrides) - set(app.config))
    if unknown:
        known = ", ".join(sorted(app.config)) or "none"
        raise ContractError(
            [
                f"app_config sets {', '.join(unknown)}, which the app's "
                f"[tool.flwr.app.config] does not declare (it declares: {known})"
            ]
        )
    merged = dict(app.config)
    for key, value in overrides.items():
        if type(value) is not type(app.config[key]) and not (
            isinstance(value, int | float) and isinstance(app.config[key], int | float)
        ):
            raise ContractError(
                [
                    f"app_config {key} = {value!r}: the app declares it as "
                    f"{type(app.config[key]).__name__} ({app.config[key]!r})"
                ]
            )
        merged[key] = value
    return merged

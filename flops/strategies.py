"""Aggregation strategies by name: Flower's own implementations, nothing rewritten.

Built-ins map a FLOps name to a class in `flwr.serverapp.strategy`; third parties
add theirs through the `flops.strategies` entry-point group. An unknown name lists
the known ones; strategy parameters are checked against the class's own signature.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from flops.config import ProjectConfig
from flops.errors import ConfigError

if TYPE_CHECKING:
    from flwr.serverapp.strategy import Strategy

ENTRY_POINT_GROUP = "flops.strategies"

BUILTIN_STRATEGIES: dict[str, str] = {
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "fedadam": "FedAdam",
    "fedyogi": "FedYogi",
    "fedadagrad": "FedAdagrad",
    "fedavgm": "FedAvgM",
    "fedmedian": "FedMedian",
    "krum": "Krum",
    "multikrum": "MultiKrum",
    "trimmed-mean": "FedTrimmedAvg",
    "bulyan": "Bulyan",
    "qfedavg": "QFedAvg",
}

# Set from the project config (learners, min_fit, min_evaluate), not from params,
# so there is one place to say how many learners a round needs.
_MANAGED_PARAMS = {"min_train_nodes", "min_evaluate_nodes", "min_available_nodes"}
# Wiring between the ServerApp and the ClientApp; not the user's to change.
_INTERNAL_PARAMS = {
    "weighted_by_key",
    "arrayrecord_key",
    "configrecord_key",
    "train_metrics_aggr_fn",
    "evaluate_metrics_aggr_fn",
}


@cache
def _plugin_entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def strategy_names() -> list[str]:
    """Every strategy name a config may use, built-ins first."""
    extra = sorted(set(_plugin_entry_points()) - set(BUILTIN_STRATEGIES))
    return [*BUILTIN_STRATEGIES, *extra]


def strategy_class(name: str) -> type[Strategy]:
    """The Flower Strategy class registered under `name`."""
    key = name.lower()
    if key in BUILTIN_STRATEGIES:
        module = importlib.import_module("flwr.serverapp.strategy")
        cls: type[Strategy] = getattr(module, BUILTIN_STRATEGIES[key])
        return cls
    plugin = _plugin_entry_points().get(key)
    if plugin is not None:
        loaded: type[Strategy] = plugin.load()
        return loaded
    raise ConfigError(
        f"Unknown strategy '{name}'. Known strategies: {', '.join(strategy_names())}."
    )


def _parameters(cls: type[Any]) -> dict[str, inspect.Parameter]:
    signature = inspect.signature(cls.__init__)
    return {
        name: param
        for name, param in signature.parameters.items()
        if name != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD
    }


def _type_problem(cls: type[Any], key: str, value: Any) -> str | None:
    """Why `value` does not fit the type the strategy's signature gives `key`."""
    try:
        hint = typing.get_type_hints(cls.__init__).get(key)
    except Exception:  # a plugin's annotations that do not resolve: unchecked
        return None
    if hint is None:
        return None
    try:
        TypeAdapter(hint).validate_python(value, strict=True)
    except ValidationError:
        name = getattr(hint, "__name__", str(hint))
        return (
            f"strategy parameter '{key}' must be {name} (strategy "
            f"'{cls.__name__}'), got {value!r}"
        )
    except Exception:  # a type pydantic cannot check: left to the strategy
        return None
    return None


def strategy_kwargs(config: ProjectConfig) -> dict[str, Any]:
    """Keyword arguments for the strategy class; raises ConfigError on bad params."""
    cls = strategy_class(config.strategy)
    accepted = _parameters(cls)
    tunable = sorted(set(accepted) - _MANAGED_PARAMS - _INTERNAL_PARAMS)
    problems = []
    for key, value in config.strategy_params.items():
        if key in _MANAGED_PARAMS:
            problems.append(
                f"strategy parameter '{key}' is set from learners/min_fit/"
                "min_evaluate; set those instead"
            )
        elif key not in accepted or key in _INTERNAL_PARAMS:
            problems.append(
                f"strategy '{config.strategy}' has no parameter '{key}' "
                f"(it takes: {', '.join(tunable) or 'none'})"
            )
        elif (problem := _type_problem(cls, key, value)) is not None:
            problems.append(problem)
    missing = [
        name
        for name, param in accepted.items()
        if param.default is inspect.Parameter.empty
        and name not in config.strategy_params
        and name not in _MANAGED_PARAMS
    ]
    problems += [
        f"strategy '{config.strategy}' requires parameter '{name}' "
        f"(set strategy_params.{name})"
        for name in missing
    ]
    if problems:
        raise ConfigError(
            "Invalid strategy parameters:\n" + "\n".join(f"- {p}" for p in problems)
        )
    kwargs: dict[str, Any] = dict(config.strategy_params)
    managed = {
        "min_train_nodes": config.effective_min_fit,
        "min_evaluate_nodes": config.effective_min_evaluate,
        # Later rounds go on with the learners that are left; the first waits for
        # every one (flops.app.tracking), which Flower's own wait cannot time out.
        "min_available_nodes": max(
            config.effective_min_fit, config.effective_min_evaluate
        ),
    }
    kwargs.update({key: value for key, value in managed.items() if key in accepted})
    return kwargs


def validate_strategy(config: ProjectConfig) -> None:
    """Raise ConfigError when the strategy or its parameters are unusable."""
    strategy_kwargs(config)


def build_strategy(config: ProjectConfig, mixin: type[Any] | None = None) -> Strategy:
    """Instantiate the configured strategy, optionally with a mixin in front of it.

    The mixin (FLOps uses one for round tracking) overrides aggregate/configure
    hooks and calls `super()`, so it works with every Strategy subclass.
    """
    cls = strategy_class(config.strategy)
    kwargs = strategy_kwargs(config)
    if mixin is not None:
        cls = type(f"{mixin.__name__}{cls.__name__}", (mixin, cls), {})
    try:
        strategy: Strategy = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"Strategy '{config.strategy}' rejected its parameters: {err}"
        ) from err
    return strategy

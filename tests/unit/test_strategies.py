import pytest
from flwr.serverapp.strategy import FedAvg, FedProx, FedTrimmedAvg

from flops.config import parse_config
from flops.errors import ConfigError
from flops.strategies import (
    build_strategy,
    strategy_class,
    strategy_names,
    validate_strategy,
)


def test_required_strategies_are_flowers_own() -> None:
    for name in (
        "fedavg",
        "fedprox",
        "fedadam",
        "fedyogi",
        "fedmedian",
        "krum",
        "trimmed-mean",
    ):
        assert name in strategy_names()
        assert strategy_class(name).__module__.startswith("flwr.serverapp.strategy")
    assert strategy_class("trimmed-mean") is FedTrimmedAvg


def test_unknown_strategy_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        validate_strategy(parse_config({"strategy": "fedbest"}))
    assert "Unknown strategy 'fedbest'" in str(err.value)
    assert "fedavg, fedprox" in str(err.value)


def test_parameters_are_checked_against_the_class() -> None:
    with pytest.raises(ConfigError) as err:
        validate_strategy(
            parse_config({"strategy": "fedprox", "strategy_params": {"mu": 0.1}})
        )
    assert "strategy 'fedprox' has no parameter 'mu'" in str(err.value)
    assert "proximal_mu" in str(err.value)


def test_managed_parameters_point_at_the_config_keys() -> None:
    with pytest.raises(ConfigError, match="set from learners/min_fit/min_evaluate"):
        validate_strategy(parse_config({"strategy_params": {"min_train_nodes": 3}}))


def test_required_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match="requires parameter 'client_learning_rate'"):
        validate_strategy(parse_config({"strategy": "qfedavg"}))


def test_build_applies_config_and_params_behind_a_mixin() -> None:
    class Mixin:
        marker = True

    config = parse_config(
        {
            "strategy": "fedprox",
            "learners": 4,
            "min_fit": 3,
            "strategy_params": {"proximal_mu": 0.5},
        }
    )
    strategy = build_strategy(config, Mixin)
    assert isinstance(strategy, FedProx) and isinstance(strategy, Mixin)
    assert strategy.proximal_mu == 0.5
    assert (
        strategy.min_train_nodes,
        strategy.min_evaluate_nodes,
        strategy.min_available_nodes,
    ) == (3, 4, 4)
    assert isinstance(build_strategy(parse_config({})), FedAvg)


@pytest.mark.parametrize(
    ("strategy", "params", "expected"),
    [
        ("fedprox", {"proximal_mu": "abc"}, "'proximal_mu' must be float"),
        ("fedadam", {"eta": "abc"}, "'eta' must be float"),
        ("krum", {"num_malicious_nodes": 1.5}, "'num_malicious_nodes' must be int"),
        ("fedavg", {"fraction_train": True}, "'fraction_train' must be float"),
    ],
)
def test_parameters_are_typed_by_the_strategys_signature(
    strategy: str, params: dict[str, object], expected: str
) -> None:
    config = parse_config({"strategy": strategy, "strategy_params": params})
    with pytest.raises(ConfigError, match=expected):
        validate_strategy(config)


def test_an_int_is_a_fine_float() -> None:
    validate_strategy(
        parse_config({"strategy": "fedprox", "strategy_params": {"proximal_mu": 1}})
    )

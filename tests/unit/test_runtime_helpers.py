"""Events, user-code errors, model export helpers."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from flops import events, model_export, usercode
from flops.errors import ConfigError


def test_event_round_trip_and_non_finite_numbers() -> None:
    line = events.format_event(
        events.ROUND_FINISHED, round=2, metrics={"loss": math.nan}
    )
    parsed = events.parse_event("some prefix " + line)
    assert parsed is not None
    assert parsed["type"] == "round_finished" and parsed["round"] == 2
    assert parsed["metrics"]["loss"] == "nan"
    assert events.parse_event("INFO: ordinary log line") is None
    assert events.parse_event(events.PREFIX + "{broken") is None


def test_user_errors_point_at_the_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model_manager.py").write_text(
        "class ModelManager:\n    def fit_model(self):\n"
        "        raise ValueError('boom')\n"
    )
    monkeypatch.setenv(usercode.REPO_DIR_ENV, str(tmp_path))
    sys.modules.pop("model_manager", None)
    try:
        manager = usercode.new_model_manager(tmp_path)
        with pytest.raises(usercode.UserCodeError) as err:
            usercode.call(manager.fit_model, "fit_model()")
    finally:
        sys.modules.pop("model_manager", None)
    assert (
        str(err.value)
        == "fit_model() raised ValueError: boom (model_manager.py line 3)"
    )


def test_parameters_must_be_numeric_arrays() -> None:
    class Good:
        def get_model_parameters(self) -> list[object]:
            return [[1.0, 2.0], np.zeros(3)]

    class Bad:
        def get_model_parameters(self) -> object:
            return {"w": 1}

    assert [a.shape for a in usercode.get_parameters(Good())] == [(2,), (3,)]
    with pytest.raises(
        usercode.UserCodeError, match="must return a list of NumPy arrays"
    ):
        usercode.get_parameters(Bad())


def test_flavor_detection() -> None:
    assert model_export.detect_flavor(LogisticRegression()) == "sklearn"
    with pytest.raises(ConfigError, match="Set model_flavor"):
        model_export.detect_flavor(object())


def test_signature_from_the_learners_own_inputs() -> None:
    class Manager:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.x_train = rng.random((40, 6))
            self.y_train = rng.integers(0, 3, 40)
            self.model = LogisticRegression().fit(self.x_train, self.y_train)

        def get_model(self) -> LogisticRegression:
            return self.model

    sample = model_export.input_sample(Manager())
    assert sample is not None and sample.shape == (5, 6)
    signature = model_export.signature_for(Manager(), "sklearn")
    assert signature is not None
    # Written by FLOps without MLflow: MLflow must read it back as its own.
    from mlflow.models import ModelSignature

    parsed = ModelSignature.from_dict(signature)
    assert parsed.inputs.inputs[0].shape == (-1, 6)
    assert parsed.inputs.inputs[0].type == np.dtype("float64")
    assert parsed.outputs.inputs[0].shape == (-1,)


def test_sklearn_models_get_skops() -> None:
    assert model_export.export_requirements(["scikit-learn>=1.4", "numpy"]) == [
        "skops>=0.10"
    ]
    assert model_export.export_requirements(["scikit-learn", "skops==0.13"]) == []
    assert model_export.export_requirements(["torch==2.13.0"]) == []

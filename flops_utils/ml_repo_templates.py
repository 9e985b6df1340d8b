"""Abstract templates for the two classes an ML repo provides."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class DataManagerTemplate(ABC):
    """Loads and prepares the learner's local data.

    Only `get_data()` is required (as FLOps' contract checks). `_prepare_data()`
    is where the Oakestra template puts loading and preprocessing; it is optional
    here, so a DataManager written without it still starts.
    """

    def _prepare_data(self) -> Any:
        """Load data with `load_dataset()` and preprocess it (optional)."""
        return None

    @abstractmethod
    def get_data(self) -> tuple[Any, Any]:
        """Return the prepared data, e.g. (train, test)."""


class ModelManagerTemplate(ABC):
    """Wraps the user's model for FLOps.

    The aggregator constructs it without data (to read initial parameters and to
    export the final model); only learners call `set_model_data()`.
    """

    @abstractmethod
    def set_model_data(self) -> None:
        """Fetch data from the DataManager and keep it for fit/evaluate."""

    @abstractmethod
    def get_model(self) -> Any:
        """Return the underlying model object (sklearn estimator, torch module...)."""

    @abstractmethod
    def get_model_parameters(self) -> Any:
        """Return the parameters as a list of NumPy arrays."""

    @abstractmethod
    def set_model_parameters(self, parameters: Any) -> None:
        """Load parameters given as a list of NumPy arrays."""

    @abstractmethod
    def fit_model(self) -> int:
        """Train locally; return the number of training examples."""

    @abstractmethod
    def evaluate_model(self) -> tuple[Any, Any, int]:
        """Return (loss, accuracy, number of evaluation examples)."""

"""The model side of the FLOps contract: FLOps calls these methods, nothing else.

Replace the model and the sizes below with yours. Learners call, per round:
set_model_data(), set_model_parameters(global), fit_model() or evaluate_model(),
get_model_parameters(). The aggregator only builds ModelManager() (no data!),
reads get_model_parameters() once for the initial model, and exports get_model().
"""

from typing import Any

import numpy as np
from data_manager import DataManager
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss

from flops_utils.ml_repo_templates import ModelManagerTemplate

CLASSES = np.arange(10)  # labels of the `digits` example data
FEATURES = 64  # 8x8 pixels


class ModelManager(ModelManagerTemplate):
    def __init__(self) -> None:
        # Build the model with its parameters initialised, but load no data here:
        # the aggregator constructs this class too.
        self.model = SGDClassifier(loss="log_loss", random_state=0)
        self.model.partial_fit(np.zeros((1, FEATURES)), [0], classes=CLASSES)
        self.model.coef_[:] = 0.0
        self.model.intercept_[:] = 0.0

    def set_model_data(self) -> None:
        """Called on learners only: fetch this learner's prepared data."""
        (self.x_train, self.x_test), (self.y_train, self.y_test) = (
            DataManager().get_data()
        )

    def get_model(self) -> Any:
        """The object FLOps logs to MLflow (sklearn, torch or keras)."""
        return self.model

    def get_model_parameters(self) -> list[np.ndarray]:
        """Everything FedAvg averages, as NumPy arrays, in a fixed order."""
        return [self.model.coef_, self.model.intercept_]

    def set_model_parameters(self, parameters: list[np.ndarray]) -> None:
        """The inverse of get_model_parameters()."""
        self.model.coef_, self.model.intercept_ = parameters

    def fit_model(self) -> int:
        """Local training for one round; return the number of examples used."""
        self.model.partial_fit(self.x_train, self.y_train)
        return len(self.x_train)

    def evaluate_model(self) -> tuple[float, float, int]:
        """(loss, accuracy, number of examples) on this learner's test split."""
        probabilities = self.model.predict_proba(self.x_test)
        loss = log_loss(self.y_test, probabilities, labels=CLASSES)
        return (
            float(loss),
            float(self.model.score(self.x_test, self.y_test)),
            len(self.x_test),
        )

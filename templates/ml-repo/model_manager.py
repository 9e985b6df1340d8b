import warnings
from typing import Any

import numpy as np
from data_manager import DataManager
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from flops_utils.ml_repo_templates import ModelManagerTemplate

N_CLASSES = 10
N_FEATURES = 64  # 8x8 pixels


class ModelManager(ModelManagerTemplate):
    def __init__(self):
        self.model = LogisticRegression(
            max_iter=20, warm_start=True
        )  # 20 local iterations per round
        # The aggregator asks for parameters before any training: start from zeros.
        self.model.classes_ = np.arange(N_CLASSES)
        self.model.coef_ = np.zeros((N_CLASSES, N_FEATURES))
        self.model.intercept_ = np.zeros((N_CLASSES,))

    def set_model_data(self) -> None:
        (self.x_train, self.x_test), (self.y_train, self.y_test) = (
            DataManager().get_data()
        )

    def get_model(self) -> Any:
        return self.model

    def get_model_parameters(self) -> Any:
        return [self.model.coef_, self.model.intercept_]

    def set_model_parameters(self, parameters) -> None:
        self.model.coef_, self.model.intercept_ = parameters

    def fit_model(self) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # ConvergenceWarning: few iterations by design
            self.model.fit(self.x_train, self.y_train)
        return len(self.x_train)

    def evaluate_model(self) -> tuple[Any, Any, int]:
        probabilities = self.model.predict_proba(self.x_test)
        loss = log_loss(self.y_test, probabilities, labels=self.model.classes_)
        accuracy = self.model.score(self.x_test, self.y_test)
        return loss, accuracy, len(self.x_test)

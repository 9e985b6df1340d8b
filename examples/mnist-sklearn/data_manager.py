from typing import Any

from flops_utils.ml_repo_building_blocks import load_dataset
from flops_utils.ml_repo_templates import DataManagerTemplate


class DataManager(DataManagerTemplate):
    def __init__(self):
        (self.x_train, self.x_test), (self.y_train, self.y_test) = self._prepare_data()

    def _prepare_data(self) -> Any:
        dataset = load_dataset()
        dataset.set_format("numpy")
        x = dataset["image"].reshape((len(dataset), -1)) / 16.0  # pixels are 0..16
        y = dataset["label"]
        # Split the learner's local data: 80% train, 20% test
        split = int(0.8 * len(x))
        return (x[:split], x[split:]), (y[:split], y[split:])

    def get_data(self) -> tuple[Any, Any]:
        return (self.x_train, self.x_test), (self.y_train, self.y_test)

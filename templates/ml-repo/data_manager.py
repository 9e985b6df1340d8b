"""The data side of the FLOps contract: load and prepare this learner's data.

load_dataset() returns a Hugging Face `datasets.Dataset` with the learner's rows
of every data tag the project trains on (`flops data push FILE --tag TAG`). To
run this file outside FLOps, set FLOPS_DATA_DIR (a folder with TAG/*.parquet)
and FLOPS_DATA_TAGS.
"""

from typing import Any

from flops_utils.ml_repo_building_blocks import load_dataset
from flops_utils.ml_repo_templates import DataManagerTemplate

TEST_FRACTION = 0.2


class DataManager(DataManagerTemplate):
    def __init__(self) -> None:
        self.train, self.test = self._prepare_data()

    def _prepare_data(self) -> Any:
        """Optional (the contract needs only get_data); the usual place to load."""
        dataset = load_dataset().with_format("numpy")
        x = dataset["image"].astype("float64") / 16.0  # digits: 64 pixels, 0..16
        y = dataset["label"]
        split = int((1 - TEST_FRACTION) * len(y))
        return (x[:split], y[:split]), (x[split:], y[split:])

    def get_data(self) -> tuple[Any, Any]:
        """((x_train, x_test), (y_train, y_test)), as ModelManager unpacks it."""
        (x_train, y_train), (x_test, y_test) = self.train, self.test
        return (x_train, x_test), (y_train, y_test)

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from flops_utils.ml_repo_building_blocks import load_dataset
from flops_utils.ml_repo_templates import DataManagerTemplate


class DataManager(DataManagerTemplate):
    def __init__(self):
        self.trainloader, self.testloader = self._prepare_data()

    def _prepare_data(self) -> Any:
        dataset = load_dataset()
        dataset.set_format("numpy")
        images = (
            torch.tensor(dataset["image"], dtype=torch.float32).reshape(-1, 1, 8, 8)
            / 16.0
        )
        labels = torch.tensor(dataset["label"], dtype=torch.long)
        split = int(0.8 * len(labels))  # 80% train, 20% test, on each learner
        generator = torch.Generator().manual_seed(0)
        train = DataLoader(
            TensorDataset(images[:split], labels[:split]),
            batch_size=32,
            shuffle=True,
            generator=generator,
        )
        test = DataLoader(TensorDataset(images[split:], labels[split:]), batch_size=256)
        return train, test

    def get_data(self) -> tuple[Any, Any]:
        return self.trainloader, self.testloader

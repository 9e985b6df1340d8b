from collections import OrderedDict
from typing import Any

import torch
from data_manager import DataManager
from torch import nn

from flops_utils.ml_repo_templates import ModelManagerTemplate

LOCAL_EPOCHS = 2


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16 x 4 x 4
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 32 x 2 x 2
        )
        self.classifier = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ModelManager(ModelManagerTemplate):
    def __init__(self):
        torch.manual_seed(0)  # every actor starts from the same weights
        self.model = DigitsCNN()

    def set_model_data(self) -> None:
        self.trainloader, self.testloader = DataManager().get_data()

    def get_model(self) -> Any:
        return self.model

    def get_model_parameters(self) -> Any:
        return [value.cpu().numpy() for value in self.model.state_dict().values()]

    def set_model_parameters(self, parameters) -> None:
        keys = self.model.state_dict().keys()
        state = OrderedDict(
            (k, torch.tensor(v)) for k, v in zip(keys, parameters, strict=True)
        )
        self.model.load_state_dict(state, strict=True)

    def fit_model(self) -> int:
        optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)
        loss_fn = nn.CrossEntropyLoss()
        self.model.train()
        for _ in range(LOCAL_EPOCHS):
            for images, labels in self.trainloader:
                optimizer.zero_grad()
                loss_fn(self.model(images), labels).backward()
                optimizer.step()
        return len(self.trainloader.dataset)

    def evaluate_model(self) -> tuple[Any, Any, int]:
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        self.model.eval()
        loss, correct = 0.0, 0
        with torch.no_grad():
            for images, labels in self.testloader:
                outputs = self.model(images)
                loss += loss_fn(outputs, labels).item()
                correct += (outputs.argmax(1) == labels).sum().item()
        total = len(self.testloader.dataset)
        return loss / total, correct / total, total

"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flops_management.api.main import create_app
from flops_management.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The API over a real SQLite store in `tmp_path`, with the admin token;
    MLflow points nowhere (port 9), so nothing here reaches a tracking server."""
    settings = Settings(
        home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9"
    )
    with TestClient(create_app(settings)) as client:
        token = settings.token_file.read_text().strip()
        client.headers["Authorization"] = f"Bearer {token}"
        yield client

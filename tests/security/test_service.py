"""The service keeps its own state straight: a killed MLflow leader is still
seen by its process group, stage and project states agree after `flops down`,
strategy parameters are typed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flops import subprocesses
from tests.security.conftest import Tenant
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_status_and_up_see_mlflows_process_group(stack: Stack) -> None:
    leader = int((stack.home / "run" / "mlflow.pid").read_text())
    workers = [p for p in subprocesses.group_members(leader) if p != leader]
    assert workers, "MLflow's server runs workers besides its leader"
    os.kill(leader, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while subprocesses.pid_alive(leader) and time.monotonic() < deadline:
        time.sleep(0.1)
    status = stack.flops("status")
    assert status.returncode == 0, status.stdout
    assert "mlflow" in status.stdout and "down" not in status.stdout
    up = stack.flops("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "mlflow: already running" in up.stdout


@pytest.mark.parametrize(
    ("strategy", "params", "expected"),
    [
        ("fedprox", {"proximal_mu": "abc"}, "'proximal_mu' must be float"),
        ("fedadam", {"eta": "abc"}, "'eta' must be float"),
    ],
)
def test_a_strategy_parameter_of_the_wrong_type_is_a_422_naming_it(
    mallory: Tenant,
    example_url: str,
    strategy: str,
    params: dict[str, object],
    expected: str,
) -> None:
    answer = mallory.submit(
        {"repo": example_url, "strategy": strategy, "strategy_params": params}
    )
    assert answer.status_code == 422
    assert expected in answer.json()["error"]["message"]

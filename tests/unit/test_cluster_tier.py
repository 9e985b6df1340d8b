"""A cluster's aggregator serving the root's requests (flops.app.cluster), with
a recording strategy and grid in place of Flower's (the relay is real)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from flops.app import cluster, relay


class FakeStrategy:
    """Records what it is asked; answers like FedAvg over two learners."""

    signature = None

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.round: int | None = None
        self.fail = fail

    def begin_round(self, server_round: int) -> None:
        self.calls.append(("begin", server_round))
        self.round = server_round

    def in_round(self, server_round: int) -> bool:
        return self.round == server_round

    def configure_train(self, server_round: int, *_: Any) -> list[str]:
        self.begin_round(server_round)
        return ["m1", "m2"]

    def aggregate_train(self, server_round: int, replies: Any) -> Any:
        self.calls.append(("aggregate_train", server_round))
        if self.fail is not None:
            raise self.fail
        return ArrayRecord([np.ones(2)]), MetricRecord({"train_loss": 0.5})

    def configure_evaluate(self, server_round: int, *_: Any) -> list[str]:
        self.calls.append(("configure_evaluate", server_round))
        return ["m1", "m2"]

    def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
        return MetricRecord({"accuracy": 0.9})


class Reply:
    """A learner's successful reply, as far as the cluster tier reads it."""

    content = RecordDict({"metrics": MetricRecord({"num-examples": 30})})

    def has_error(self) -> bool:
        return False


class FakeGrid:
    def send_and_receive(self, messages: list[str], timeout: float) -> list[Reply]:
        return [Reply() for _ in messages]


def _serve(
    path: str, rounds: cluster.ClusterRounds, requests: int, total: int = 3
) -> tuple[threading.Thread, list[bool]]:
    finals: list[bool] = []

    def run() -> None:
        with relay.RelayServer(path) as server:
            for _ in range(requests):
                finals.append(cluster._serve_one(server, rounds, "edge-a", total))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)
    return thread, finals


def _ask(path: str, phase: str, server_round: int) -> relay.Answer:
    return relay.ask(path, relay.Request(phase, server_round, {}, [np.zeros(2)]), 10, 5)


def test_an_evaluate_without_its_train_begins_its_round(tmp_path: Path) -> None:
    path = relay.relay_path(tmp_path)
    strategy = FakeStrategy()
    rounds = cluster.ClusterRounds(strategy, FakeGrid(), 100.0)  # type: ignore[arg-type]
    thread, finals = _serve(path, rounds, 2)
    answer = _ask(path, relay.EVALUATE, 1)
    assert answer.num_examples == 60 and answer.metrics == {"accuracy": 0.9}
    # The same request again (an uplink's retry): the same answer, no new round.
    assert _ask(path, relay.EVALUATE, 1).num_examples == 60
    thread.join()
    assert strategy.calls == [("begin", 1), ("configure_evaluate", 1)]
    assert finals == [False, False]


def test_any_failure_is_answered_and_the_cluster_serves_on(tmp_path: Path) -> None:
    path = relay.relay_path(tmp_path)
    strategy = FakeStrategy(fail=KeyError("weights"))
    rounds = cluster.ClusterRounds(strategy, FakeGrid(), 100.0)  # type: ignore[arg-type]
    thread, _ = _serve(path, rounds, 2)
    with pytest.raises(relay.RelayError, match="KeyError"):
        _ask(path, relay.TRAIN, 1)
    strategy.fail = None
    trained = _ask(path, relay.TRAIN, 2)  # the next round is served
    assert trained.num_examples == 60
    assert [a.tolist() for a in trained.arrays] == [[1.0, 1.0]]
    thread.join()


def test_the_last_rounds_evaluation_ends_the_cluster(tmp_path: Path) -> None:
    path = relay.relay_path(tmp_path)
    rounds = cluster.ClusterRounds(FakeStrategy(), FakeGrid(), 100.0)  # type: ignore[arg-type]
    thread, finals = _serve(path, rounds, 2, total=3)
    _ask(path, relay.TRAIN, 3)
    _ask(path, relay.EVALUATE, 3)
    thread.join()
    assert finals == [False, True]

"""A cluster's aggregator (hierarchical mode): one round of its learners per
request of the root.

The cluster's ServerApp runs on the cluster's own SuperLink, where only its
learners are nodes. It does not run rounds of its own accord: each time the
root's message reaches the cluster's uplink (flops.app.uplink), the relay
(flops.app.relay) hands it here, and this runs that phase with the project's
strategy over the cluster's learners, tracked like a classic run (its figures
in the cluster's MLflow run, each learner's in a child run under it, job events
from this actor's log), and answers with the aggregate and the number of
examples behind it, which the root weighs it by. With FedAvg the root's
average of cluster averages, weighted so, is the average over every learner.

A phase that fails (too few learners, a timeout) is answered with the reason;
the cluster goes on serving the root's later rounds. The run ends after the
final round's evaluation, or when its actors are stopped with the job.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from flops import events, usercode
from flops.app import relay
from flops.app import run_settings as keys
from flops.app.grid import FastPollGrid, connection_reporter
from flops.app.run_settings import RunSettings
from flops.app.run_tracker import RunTracker
from flops.app.tracking import TrackedStrategy, tracked_strategy
from flops.errors import FlopsError

logger = logging.getLogger(__name__)

EXAMPLES_KEY = relay.EXAMPLES_KEY
# A phase's share of the root's round_timeout: first waiting for learners, then
# their replies, so that the cluster answers (with its reason) before the root
# stops waiting for it.
WAIT_SHARE = 0.3
REPLY_SHARE = 0.6


def examples(replies: Iterable[Message]) -> int:
    """How many examples the successful replies were computed on."""
    total = 0
    for msg in replies:
        if msg.has_error():
            continue
        for record in msg.content.metric_records.values():
            value = record.get(EXAMPLES_KEY)
            if isinstance(value, int | float):
                total += int(value)
    return total


def _numbers(record: MetricRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, int | float) and key != EXAMPLES_KEY
    }


class ClusterRounds:
    """Runs the phases the root asks for, over this cluster's learners."""

    def __init__(
        self, strategy: TrackedStrategy, grid: FastPollGrid, round_timeout: float
    ) -> None:
        self.strategy: Any = strategy
        self.grid = grid
        self.reply_timeout = REPLY_SHARE * round_timeout
        self._last: tuple[tuple[str, int], relay.Answer] | None = None

    def _exchange(
        self, configure: Callable[[], Iterable[Message]]
    ) -> tuple[list[Message], int]:
        messages = list(configure())
        replies = list(self.grid.send_and_receive(messages, timeout=self.reply_timeout))
        count = examples(replies)
        if messages and count == 0:
            # The root weighs the cluster by its examples: none is no answer.
            raise FlopsError("no learner of the cluster answered with any examples")
        return replies, count

    def train(self, request: relay.Request) -> relay.Answer:
        arrays = ArrayRecord(request.arrays)
        config = ConfigRecord(request.config)
        replies, count = self._exchange(
            lambda: self.strategy.configure_train(
                request.server_round, arrays, config, self.grid
            )
        )
        aggregate, metrics = self.strategy.aggregate_train(
            request.server_round, replies
        )
        return relay.Answer(
            metrics=_numbers(metrics),
            num_examples=count,
            arrays=aggregate.to_numpy_ndarrays(),
        )

    def evaluate(self, request: relay.Request) -> relay.Answer:
        if not self.strategy.in_round(request.server_round):
            self.strategy.begin_round(request.server_round)
        arrays = ArrayRecord(request.arrays)
        config = ConfigRecord(request.config)
        replies, count = self._exchange(
            lambda: self.strategy.configure_evaluate(
                request.server_round, arrays, config, self.grid
            )
        )
        metrics = self.strategy.aggregate_evaluate(request.server_round, replies)
        signature = self.strategy.signature or {}
        return relay.Answer(
            metrics=_numbers(metrics),
            num_examples=count,
            meta={f"signature-{part}": value for part, value in signature.items()},
        )

    def run(self, request: relay.Request) -> relay.Answer:
        """The phase's answer; the same request again (an uplink's retry) gets
        the same answer, not a second round of the learners."""
        key = (request.phase, request.server_round)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if request.phase == relay.TRAIN:
            answer = self.train(request)
        elif request.phase == relay.EVALUATE:
            answer = self.evaluate(request)
        else:
            raise FlopsError(f"the root asked for an unknown phase {request.phase!r}")
        self._last = (key, answer)
        return answer


def serve(settings: RunSettings, client: Any, grid: Grid) -> None:
    """The cluster's run: answer the root's requests until its last round."""
    cluster = settings.cluster
    config = settings.config.cluster_config(cluster)
    fast = FastPollGrid(
        grid, settings.poll_interval, connection_reporter(config.learners)
    )
    tracker = RunTracker(client, settings.experiment_id, settings.run_id)
    # Within the root's round_timeout, the first round's wait for every
    # learner included: the root waits for the cluster no longer than that.
    wait = WAIT_SHARE * config.round_timeout
    strategy = tracked_strategy(
        config, tracker, min(settings.connect_timeout, wait), wait_timeout=wait
    )
    events.emit(events.RUN_STARTED, cluster=cluster, learners=config.learners)
    rounds = ClusterRounds(strategy, fast, config.round_timeout)
    try:
        with relay.RelayServer(settings.relay) as server:
            while not _serve_one(server, rounds, cluster, config.rounds):
                pass
    finally:
        tracker.finish_children("FINISHED")


def _serve_one(
    server: relay.RelayServer, rounds: ClusterRounds, cluster: str, total: int
) -> bool:
    """Answer one request of the root; True once it was the last round's
    evaluation. A phase that fails is answered with why; the cluster goes on."""
    with server.next_request(timeout=None) as (request, reply):
        if request.expired:
            logger.warning("Skipped %s of round %s: the uplink gave up on it",
                           request.phase, request.server_round)  # fmt: skip
            return False
        try:
            answer: relay.Answer | str = rounds.run(request)
        except Exception as exc:
            answer = (
                str(exc)
                if isinstance(exc, FlopsError)
                else usercode.describe(exc, "the cluster's aggregator")
            )
            events.emit(
                events.CLUSTER_FAILED,
                cluster=cluster,
                round=request.server_round,
                phase=request.phase,
                reason=answer,
            )
        try:
            reply(answer)
        except OSError as exc:  # the uplink gave up; the root decides
            logger.warning("The uplink did not take the answer: %s", exc)
    return request.phase == relay.EVALUATE and (
        request.server_round >= total or bool(request.config.get(keys.FINAL_ROUND))
    )


def main(grid: Grid, settings: RunSettings) -> None:
    """Entry from the ServerApp (flops.app.server) for a cluster-tier run: its
    MLflow run is the cluster's (a child of the job's, made by the service)."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = mlflow.MlflowClient(settings.tracking_uri)
    with mlflow.start_run(run_id=settings.run_id, log_system_metrics=True):
        mlflow.set_tag("flops.cluster_host", socket.gethostname())
        serve(settings, client, grid)

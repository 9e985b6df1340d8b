"""A cluster's uplink (hierarchical mode): its node at the root SuperLink.

To the root the cluster is one learner: it receives the root's train and
evaluate messages like any ClientApp. Its tasks do no learning of their own:
they hand the message to the cluster's aggregator through the relay
(flops.app.relay) and reply with the cluster's aggregate, its metrics, and the
number of examples behind them under `num-examples`, which Flower's strategies
weigh a reply by. The reply names the cluster; a cluster that could not run the
phase fails the task with the cluster's own reason.
"""

from __future__ import annotations

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)

from flops.app import relay
from flops.app import run_settings as keys
from flops.app.run_settings import RunSettings

EXAMPLES_KEY = relay.EXAMPLES_KEY


def relay_of(context: Context) -> str | None:
    """The cluster aggregator's relay, when this node is a cluster's uplink."""
    path = context.node_config.get(keys.NODE_RELAY)
    return str(path) if path else None


def forward(msg: Message, context: Context, path: str) -> Message:
    """Hand the root's message to the cluster; its answer as the reply."""
    settings = RunSettings.from_run_config(dict(context.run_config))
    phase = msg.metadata.message_type
    if phase not in (relay.TRAIN, relay.EVALUATE):
        raise relay.RelayError(f"a cluster's uplink cannot answer {phase!r} messages")
    config = msg.content.config_records.get("config") or ConfigRecord()
    answer = relay.ask(
        path,
        relay.Request(
            phase=phase,
            server_round=int(str(config.get("server-round", 0) or 0)),
            config=dict(config),
            arrays=msg.content.array_records["arrays"].to_numpy_ndarrays(),
        ),
        timeout=settings.config.round_timeout,
        connect_timeout=settings.connect_timeout,
    )
    learner = str(context.node_config.get(keys.NODE_LEARNER, context.node_id))
    content = RecordDict(
        {
            "metrics": MetricRecord(
                {**answer.metrics, EXAMPLES_KEY: answer.num_examples}
            ),
            keys.META_RECORD: ConfigRecord({"learner": learner, **answer.meta}),
        }
    )
    if phase == relay.TRAIN:
        content["arrays"] = ArrayRecord(answer.arrays)
    return Message(content=content, reply_to=msg)

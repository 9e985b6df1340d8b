"""Flower's SuperNode authentication for the learners a backend places.

With TLS on, every SuperLink runs with `--enable-supernode-auth`: a SuperNode
may pull tasks only once its public key is registered through the Control API.
For each learner it places, the backend makes a key here (the job's
`keys/<learner>/node.key`, 0600, the tenant's to read since the SuperNode runs
as it) and registers its public half under the learner's name before the
learner starts. A key nobody registered, or one revoked, is refused by the
SuperLink. (A learner that joins from its owner's machine makes its own key
there; only the public half reaches FLOps.)
"""

from __future__ import annotations

import re
from pathlib import Path

from flops.node_key import NodeKey
from flops_management.orchestrators.base import DeploymentSpec
from flops_management.orchestrators.flower_tls import JobTLS
from flops_management.orchestrators.superlink_control import SuperLinkControl
from flops_management.sandbox import sandbox_for
from flops_management.settings import Settings

NODE_KEY_FILE = "node.key"

# What the SuperLink logs when it refuses a SuperNode: Flower's API error code
# (2004: no node registered with that key), the one signal it gives.
_REFUSAL = re.compile(r"\[(/v1/fleet/[a-z-]+)\]\[ApiError:(\d+)\]")
REFUSAL_CODES = frozenset({2004})


def refusal(line: str) -> tuple[str, int] | None:
    """(the Fleet call, Flower's error code) when a SuperLink log line says
    it refused a SuperNode, else None."""
    match = _REFUSAL.search(line)
    if match is None or int(match.group(2)) not in REFUSAL_CODES:
        return None
    return match.group(1), int(match.group(2))


def key_folder(spec: DeploymentSpec, learner: str) -> Path:
    return spec.workdir / "keys" / learner


def enrol_nodes(
    settings: Settings,
    spec: DeploymentSpec,
    control_address: str,
    tls: JobTLS | None,
    names: list[str],
) -> dict[str, int]:
    """Each named node's id at the SuperLink at `control_address`, its key made
    (`keys/<name>/node.key`) and registered; {} in plaintext
    (`dev_insecure_flower`: Flower's node authentication needs TLS)."""
    if tls is None or not names:
        return {}
    nodes: dict[str, int] = {}
    with SuperLinkControl(control_address, tls.ca_file) as control:
        for name in names:
            key = NodeKey.create(key_folder(spec, name) / NODE_KEY_FILE)
            nodes[name] = control.register(key.public_pem(), name).node_id
    sandbox_for(settings).give(spec.workdir / "keys", spec.identity)
    return nodes


def enrol_learners(
    settings: Settings,
    spec: DeploymentSpec,
    control_address: str,
    tls: JobTLS | None,
    cluster: str | None = None,
) -> dict[str, int]:
    """The placed learners that dial this SuperLink (the root's, or `cluster`'s),
    each enrolled as `enrol_nodes` does."""
    names = [learner.name for learner in spec.cluster_learners(cluster)]
    return enrol_nodes(settings, spec, control_address, tls, names)

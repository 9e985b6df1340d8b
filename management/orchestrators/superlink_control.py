"""A job's SuperLink Control API, for what FLOps asks of it besides `flwr run`:
registering each learner's key (Flower's SuperNode authentication), listing the
nodes, and revoking one.

The client is Flower's own (`ControlHttpClient`), built as `flwr supernode
register` builds it (flwr/cli/utils.py, `init_http_client_from_connection`)
but in this process: the CLI costs an interpreter start and Flower's imports
(about 1.5 s) per key. Its errors become `FlopsError`s that say which call
failed and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from flops.errors import FlopsError

COMPONENT = "flwr CLI"  # what the SuperLink's version check expects to be told


@dataclass(frozen=True)
class RegisteredNode:
    node_id: int
    name: str


class SuperLinkControl:
    """The Control API at `address`, over TLS checked against `root_certificates`
    (None: plaintext, `dev_insecure_flower`)."""

    def __init__(self, address: str, root_certificates: Path | None) -> None:
        from flwr.supercore.control.control_http_client import ControlHttpClient
        from flwr.supercore.interceptors.http.runtime_version import (
            RuntimeVersionHttpInterceptor,
        )

        self.address = address
        self._client: Any = ControlHttpClient.from_server_address(
            server_address=address,
            insecure=root_certificates is None,
            root_certificates=(
                root_certificates.read_bytes() if root_certificates else None
            ),
            interceptors=[RuntimeVersionHttpInterceptor(component_name=COMPONENT)],
        )

    def __enter__(self) -> SuperLinkControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.close()

    def _call(self, what: str, method: str, request: Any) -> Any:
        try:
            return getattr(self._client, method)(request=request)
        except Exception as err:  # Flower's client raises its own kinds
            raise FlopsError(
                f"The SuperLink at {self.address} refused to {what}: {err}"
            ) from err

    def register(self, public_key: bytes, name: str) -> RegisteredNode:
        """Let the node holding the private half of `public_key` (an OpenSSH
        public key) pull tasks, as `name`."""
        from flwr.proto.control_pb2 import RegisterNodeRequest

        response = self._call(
            f"register {name}'s key",
            "RegisterNode",
            RegisterNodeRequest(public_key=public_key, name=name),
        )
        if not response.node_id:
            raise FlopsError(f"The SuperLink at {self.address} registered no node.")
        return RegisteredNode(int(response.node_id), name)

    def unregister(self, node_id: int) -> None:
        """Revoke a node: it is refused from its next request on (and its key
        cannot be registered again)."""
        from flwr.proto.control_pb2 import UnregisterNodeRequest

        self._call(
            f"unregister node {node_id}",
            "UnregisterNode",
            UnregisterNodeRequest(node_id=node_id),
        )

    def nodes(self) -> list[dict[str, Any]]:
        """The registered nodes as the SuperLink reports them (id, name,
        status, when last seen)."""
        from flwr.proto.control_pb2 import ListNodesRequest
        from google.protobuf.json_format import (  # type: ignore[import-untyped]
            MessageToDict,
        )

        response = self._call("list its nodes", "ListNodes", ListNodesRequest())
        return [
            MessageToDict(node, preserving_proto_field_name=True)
            for node in response.nodes_info
        ]

    def run_status(self, run_id: int) -> RunStatus:
        """A run's status as Flower keeps it (`pending`, `starting`,
        `running`, `finished` with `completed`/`failed`/`stopped`)."""
        from flwr.proto.control_pb2 import ListRunsRequest

        response = self._call(
            f"report run {run_id}", "ListRuns", ListRunsRequest(run_id=run_id)
        )
        run = response.run_dict.get(run_id)
        if run is None:
            raise FlopsError(f"The SuperLink at {self.address} has no run {run_id}.")
        return RunStatus(run.status.status, run.status.sub_status, run.status.details)


@dataclass(frozen=True)
class RunStatus:
    status: str
    sub_status: str
    details: str

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def completed(self) -> bool:
        return self.finished and self.sub_status == "completed"

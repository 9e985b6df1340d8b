"""The parts of a project config: per-learner resources, a hierarchical
project's clusters and their placement, what happens after training.

Each is strict, as the whole config is (flops.config): unknown keys and values
of another type are errors.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

_MEMORY_RE = re.compile(r"^\d+(\.\d+)?\s*([kKmMgG]i?[bB]?)?$")
# A cluster's name prefixes its actors' names (containers, pods, Oakestra
# services): DNS-label characters, short enough for every backend's limits.
_CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


class _Strict(BaseModel):
    # Unknown keys are errors, and so are values of another type (0 is no bool).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Resources(_Strict):
    """Per-learner resource limits; applied by the orchestrator, never ignored."""

    cpu: float | None = Field(default=None, gt=0, description="CPU cores per learner")
    memory: str | None = Field(default=None, description="e.g. 512m, 2g, 1Gi")

    @model_validator(mode="after")
    def _check_memory(self) -> Resources:
        if self.memory is not None and not _MEMORY_RE.match(self.memory.strip()):
            raise ValueError(
                f"memory {self.memory!r} is not a size such as 512m, 2g or 1Gi"
            )
        return self

    def memory_bytes(self) -> int | None:
        """The limit in bytes; k/m/g are powers of 1024, as Docker reads them."""
        if self.memory is None:
            return None
        text = self.memory.strip().lower().removesuffix("b").removesuffix("i")
        units = {"k": 1024, "m": 1024**2, "g": 1024**3}
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(float(text))


class ClusterPlacement(_Strict):
    """Where a cluster's aggregator and learners run: a named node, or nodes
    with given labels (Kubernetes), or one of the orchestrator's own clusters
    (Oakestra). Empty: anywhere the orchestrator likes."""

    node: str | None = Field(default=None, min_length=1, max_length=253)
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)
    cluster: str | None = Field(default=None, min_length=1, max_length=253)

    @model_validator(mode="after")
    def _one_kind(self) -> ClusterPlacement:
        if self.node is not None and self.labels:
            raise ValueError("a placement names a node or labels, not both")
        return self


class Cluster(_Strict):
    """One cluster of a hierarchical project: its own aggregator, which runs its
    learners' rounds and reports one aggregate per round to the root."""

    name: str = Field(description="lowercase letters, digits and '-'")
    learners: int = Field(ge=1, le=10_000)
    # Within the cluster: how many of its learners a round needs (default all).
    min_fit: int | None = Field(default=None, ge=1)
    min_evaluate: int | None = Field(default=None, ge=0)
    placement: ClusterPlacement = Field(default_factory=ClusterPlacement)

    @model_validator(mode="after")
    def _check(self) -> Cluster:
        if not _CLUSTER_NAME_RE.match(self.name):
            raise ValueError(
                f"cluster name {self.name!r} must be 1-20 lowercase letters, digits "
                "or '-', starting with a letter (it names the cluster's actors)"
            )
        mins = (("min_fit", self.min_fit), ("min_evaluate", self.min_evaluate))
        for key, value in mins:
            if value is not None and value > self.learners:
                raise ValueError(
                    f"cluster {self.name}: {key} ({value}) cannot exceed its "
                    f"learners ({self.learners})"
                )
        return self

    @property
    def effective_min_fit(self) -> int:
        return self.min_fit if self.min_fit is not None else self.learners

    @property
    def effective_min_evaluate(self) -> int:
        return self.min_evaluate if self.min_evaluate is not None else self.learners


class PostTraining(_Strict):
    build_inference_image: bool = False
    # Serve the registered model on the project's orchestrator after training
    # (container backends run the inference image, which is then built too).
    deploy_inference_server: bool = False
    # The host port the server is published on; None: a free one.
    inference_port: int | None = Field(default=None, ge=1, le=65535)

"""The orchestrator interface: place one SuperLink with its aggregator and N learners.

`Orchestrator.submit(spec)` starts the actors and returns a `Deployment` handle
with `status()`, `logs()`, `wait()` and `cancel()`. Learners only connect out to
the SuperLink; no learner exposes a port to the outside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flops.config import Resources

AGGREGATOR = "aggregator"
SUPERLINK = "superlink"


@dataclass(frozen=True)
class LearnerSpec:
    name: str
    # Folder with <tag>/*.parquet for this learner (None: the repo loads its own data).
    data_dir: Path | None


@dataclass(frozen=True)
class DeploymentSpec:
    job_id: str
    workdir: Path
    repo_dir: Path
    learners: tuple[LearnerSpec, ...]
    resources: Resources = field(default_factory=Resources)
    # local: the project's Python environment; container backends: the image.
    environment: Path | None = None
    image: str | None = None
    poll_interval: float = 0.05
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogLine:
    component: str
    text: str


class Deployment(ABC):
    """A running set of actors for one job."""

    @property
    @abstractmethod
    def control_address(self) -> str:
        """host:port where `flwr run` reaches the SuperLink's Control API."""

    @abstractmethod
    def status(self) -> dict[str, str]:
        """Component name -> 'running' or 'exited (code N)'."""

    @abstractmethod
    def logs(self) -> Iterator[LogLine]:
        """Log lines written since the previous call (does not block)."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> bool:
        """Block until every component exited; False on timeout."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop and remove every component; safe to call more than once."""

    @abstractmethod
    def runtime_info(self) -> dict[str, Any]:
        """What a restarted service needs to clean this deployment up."""

    def exited(self) -> list[str]:
        """Components that are no longer running."""
        return [name for name, state in self.status().items() if state != "running"]


class Orchestrator(ABC):
    name: ClassVar[str]
    # True: actors run from the project's FL-actor image (the build stage builds
    # and pushes it); False: from a Python environment on this host.
    needs_image: ClassVar[bool] = False

    @abstractmethod
    def submit(self, spec: DeploymentSpec) -> Deployment:
        """Start the SuperLink, the aggregator and every learner."""

    @abstractmethod
    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        """Remove what a deployment left behind when the service died mid-job."""

    def notes(self, spec: DeploymentSpec) -> list[str]:
        """What the user should know about how the spec is applied (limits...)."""
        return []

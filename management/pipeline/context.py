"""What the stages of one job share: its workspace, its log, its results so far."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flops.config import ProjectConfig
from flops.contract import ContractReport
from flops.errors import FlopsError, JobCancelledError, ServiceStoppedError
from flops_management.images.registry import ImageInfo
from flops_management.models import Project
from flops_management.orchestrators import Deployment
from flops_management.pipeline.repo_url import RepoCredentials
from flops_management.sandbox import Identity
from flops_management.settings import Settings
from flops_management.store import Store

logger = logging.getLogger(__name__)

# What a stage returns: None when it did its work, "skipped" when it had none.
StageResult = Literal["skipped"] | None

STAGE_LOG_LIMIT = 64 * 1024  # the store keeps the tail; the full log is on disk
# The lines of an image build worth showing while a user follows the job:
# FLOps' own milestones and Buildah's steps.
IMAGE_PROGRESS = re.compile(
    r"STEP \d+/\d+:|: building |: built in |^pushed |build skipped|packages "
    r"(reused|installed)|no wheel for|^base |enabling QEMU"
)


class CancelSignal(threading.Event):
    """Set to stop a job; carries why: the user cancelled, or the service stops."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "Cancelled by the user."
        self.service_stopping = False

    def trigger(self) -> None:
        self.set()

    def stop_service(self, reason: str) -> None:
        self.reason = reason
        self.service_stopping = True
        self.set()

    def error(self) -> FlopsError:
        if self.service_stopping:
            return ServiceStoppedError(self.reason)
        return JobCancelledError(self.reason)


@dataclass(frozen=True)
class Workspace:
    """FLOPS_HOME/jobs/<project id>/: everything one job writes."""

    root: Path

    @property
    def checkout(self) -> Path:
        return self.root / "checkout"

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def flwr_cli(self) -> Path:
        return self.root / "flwr" / "cli"


@dataclass
class JobContext:
    project: Project
    settings: Settings
    store: Store
    workspace: Workspace
    cancel_event: CancelSignal
    # results, filled in by the stages
    config: ProjectConfig | None = None
    report: ContractReport | None = None
    repo_dir: Path | None = None  # the ML repo: the checkout or a folder in it
    environment: Path | None = None
    runtime_environment: Path | None = None
    image: ImageInfo | None = None
    deployment: Deployment | None = None
    flower_run_id: str | None = None
    mlflow_run_id: str | None = None
    # Hierarchical mode: each cluster's MLflow run (a child of the job's).
    mlflow_cluster_runs: dict[str, str] = field(default_factory=dict)
    model_uri: str | None = None
    # The job's MLflow user (its aggregator's) exists and must be removed.
    mlflow_job_user: bool = False
    # The uid/gid the tenant's code runs as (None: the service's own, unprivileged).
    identity: Identity | None = None
    # From the submitted URL, for the clone only; never stored.
    credentials: RepoCredentials | None = field(default=None, repr=False)
    _stage_log: list[str] = field(default_factory=list)

    @property
    def project_id(self) -> str:
        return self.project.id

    @property
    def repo(self) -> Path:
        assert self.repo_dir is not None, "the clone stage sets the repo"
        return self.repo_dir

    def require_config(self) -> ProjectConfig:
        assert self.config is not None, "the check stage sets the config"
        return self.config

    def log(self, message: str) -> None:
        """A line for the current stage's log (and the service log)."""
        logger.info("[%s] %s", self.project.id, message)
        self._stage_log.append(message)

    def take_log(self) -> str:
        text = "\n".join(self._stage_log)
        self._stage_log.clear()
        if len(text) > STAGE_LOG_LIMIT:
            text = (
                "[... earlier lines in the job's log folder]\n"
                + text[-STAGE_LOG_LIMIT:]
            )
        return text

    def event(self, kind: str, **data: Any) -> None:
        self.store.append_event(self.project.id, kind, data)

    def image_log(self, line: str) -> None:
        """A line of an image build: into the stage log and the job's events, the
        milestones flagged as progress, which the CLI shows while following."""
        self.log(line)
        if IMAGE_PROGRESS.search(line):
            self.event("build_log", line=line, progress=True)
        else:
            self.event("build_log", line=line)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise self.cancel_event.error()

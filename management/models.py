"""Records the management service keeps: projects, their stages, events, tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class ProjectStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {self.SUCCEEDED, self.FAILED, self.CANCELLED}


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


STAGES = (
    "clone",
    "check",
    "augment",
    "build",
    "schedule",
    "train",
    "register",
    "inference_image",
)


class StageRecord(BaseModel):
    name: str
    status: StageStatus = StageStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)


class MlflowInfo(BaseModel):
    tracking_uri: str
    experiment_id: str | None = None
    run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_uri: str | None = None


class ServerStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class InferenceServer(BaseModel):
    """The project's registered model, served on its orchestrator."""

    url: str
    orchestrator: str
    model_uri: str
    image: str | None = None
    status: ServerStatus = ServerStatus.RUNNING
    started_at: datetime = Field(default_factory=utcnow)
    stopped_at: datetime | None = None
    # Why it stopped: the user, the service stopping, the server exiting.
    reason: str | None = None
    # Service-internal: what the orchestrator needs to stop it (container, pid).
    handle: dict[str, Any] = Field(default_factory=dict)


class Progress(BaseModel):
    stage: str | None = None
    round: int = 0
    rounds: int = 0
    learners_connected: int = 0
    # Learners that died or were stopped mid-run: name -> what happened.
    learners_lost: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float | str] = Field(default_factory=dict)


class Project(BaseModel):
    id: str
    tenant: str
    name: str
    source: str
    # Only what the user set; the repo's flops.toml fills the rest after clone.
    requested_config: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)
    status: ProjectStatus = ProjectStatus.QUEUED
    stages: list[StageRecord] = Field(
        default_factory=lambda: [StageRecord(name=name) for name in STAGES]
    )
    commit: str | None = None
    error: str | None = None
    mlflow: MlflowInfo | None = None
    # "fl_actor" / "inference": reference (pinned by digest), tag, digest, platforms
    images: dict[str, dict[str, Any]] = Field(default_factory=dict)
    progress: Progress = Field(default_factory=Progress)
    server: InferenceServer | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    # The repo URL came with credentials: held in the service's memory only, so a
    # job queued across a restart cannot clone any more (it fails, saying so).
    credentials: bool = False
    # Service-internal: where the job's processes and files are (for recovery).
    runtime: dict[str, Any] = Field(default_factory=dict)

    def stage(self, name: str) -> StageRecord:
        for record in self.stages:
            if record.name == name:
                return record
        raise KeyError(name)

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but service-internal bookkeeping."""
        return self.model_dump(
            mode="json", exclude={"runtime": True, "server": {"handle"}}
        )


class Event(BaseModel):
    seq: int
    project_id: str
    time: datetime
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class Token(BaseModel):
    digest: str
    tenant: str
    admin: bool = False
    name: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Enrolment(BaseModel):
    """One enrolment token of a project (stored by digest, never the token), and
    the learner that joined with it, once one has."""

    digest: str
    project_id: str
    tenant: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    # Set when a learner joins with the token (one learner per token).
    learner: str | None = None
    public_key: str | None = None  # the learner's node key, OpenSSH public form
    address: str | None = None  # where it joined from (client IP)
    joined_at: datetime | None = None
    last_seen: datetime | None = None
    revoked_at: datetime | None = None
    # Its registration at the project's running job's SuperLink, if any.
    job_id: str | None = None
    node_id: int | None = None


class Dataset(BaseModel):
    tenant: str
    tag: str
    partitions: int
    rows: int
    columns: list[str]
    bytes: int
    updated_at: datetime = Field(default_factory=utcnow)

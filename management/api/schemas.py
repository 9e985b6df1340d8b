"""The API's wire models: what every route answers (and its errors), typed.

Projects and data tags are the store's records as the API shows them, without
the service's own bookkeeping (where a job's processes are, how to stop a
server). Every error is one `ErrorResponse` shape, whatever raised it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flops.config import ProjectConfig
from flops_management.models import (
    Dataset,
    MlflowInfo,
    Progress,
    ProjectStatus,
    ServerStatus,
    StageRecord,
)


class ErrorBody(BaseModel):
    type: str = Field(description="The error's class, e.g. ConfigError")
    message: str
    hint: str | None = None
    project_id: str | None = Field(
        default=None, description="A rejected submission is recorded as this project"
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses answer an ErrorResponse."""
    described = {
        400: "The request is malformed",
        401: "Missing or invalid bearer token",
        403: "The token may not do this",
        404: "No such resource (for this tenant)",
        409: "The resource's state does not allow it",
        413: "The request body is over the service's limit",
        422: "The request is invalid or over a limit (the message says which)",
        500: "An error inside the service",
        503: "A service FLOps needs does not answer",
    }
    return {
        status: {"model": ErrorResponse, "description": described[status]}
        for status in statuses
    }


AUTHENTICATED = (401, 422, 500)

# Models the routes name by reference only (a body read raw, a streamed list);
# `complete()` adds them to the document's components.
_REFERENCED: dict[str, type[BaseModel]] = {}


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    _REFERENCED[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def schema_body(model: type[BaseModel], media: str = "application/json") -> Any:
    """An `openapi_extra` request body: the route reads it raw, it must be `model`."""
    return {"required": True, "content": {media: {"schema": schema_ref(model)}}}


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the models named only by reference, and request
    bodies that `openapi_extra` describes instead of FastAPI's generic ones."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _REFERENCED.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[name] = schema
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                # FastAPI's generic schema merged under ours: ours alone counts.
                if "$ref" in media.get("schema", {}):
                    media["schema"] = {"$ref": media["schema"]["$ref"]}
    return document


class ProjectSubmission(ProjectConfig):
    """The body of a submission: the project config with its `repo`."""

    repo: str = Field(  # type: ignore[assignment]
        min_length=1,
        max_length=2048,
        description="git URL (https, http, git) or, for admins, a path on the host",
    )


class InferenceServerOut(BaseModel):
    url: str
    orchestrator: str
    model_uri: str
    image: str | None = None
    status: ServerStatus
    started_at: datetime
    stopped_at: datetime | None = None
    reason: str | None = None


class ProjectOut(BaseModel):
    id: str
    tenant: str
    name: str
    source: str
    requested_config: dict[str, Any]
    config: dict[str, Any]
    status: ProjectStatus
    stages: list[StageRecord]
    commit: str | None = None
    error: str | None = None
    mlflow: MlflowInfo | None = None
    images: dict[str, dict[str, Any]]
    progress: Progress
    server: InferenceServerOut | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool
    credentials: bool


class EventOut(BaseModel):
    seq: int
    project_id: str
    time: datetime
    type: str
    data: dict[str, Any]


# A data tag is shown as it is stored: nothing in it is the service's own.
DatasetOut = Dataset


class Health(BaseModel):
    status: str
    version: str


class Info(BaseModel):
    version: str
    tenant: str
    admin: bool
    profile: str
    mlflow_tracking_uri: str
    orchestrators: list[str]


class TokenRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    name: str = Field(default="", max_length=200)
    admin: bool = False


class TokenOut(BaseModel):
    tenant: str
    name: str
    admin: bool
    token: str = Field(description="Shown once: FLOps keeps only its hash")


# -- learners that join from their owners' machines -----------------------------


class EnrolmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learners: int = Field(default=1, ge=1, le=1000, description="tokens to make")


class EnrolmentOut(BaseModel):
    project_id: str
    tokens: list[str] = Field(description="Shown once; each admits one learner")
    expires_at: datetime


class JoinedLearnerOut(BaseModel):
    learner: str | None = Field(description="None: the token is not used yet")
    status: str = Field(description="waiting, joined, registered or revoked")
    address: str | None
    joined_at: datetime | None
    last_seen: datetime | None
    expires_at: datetime
    node_id: int | None


class JoinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=40, description="the learner's name")
    public_key: str = Field(
        max_length=1024, description="its node key, OpenSSH public form (EC)"
    )


class JoinOut(BaseModel):
    project_id: str
    learner: str


class AssignmentOut(BaseModel):
    """`ready` false: the job has not registered this learner yet (poll)."""

    ready: bool
    message: str
    job_id: str | None = None
    name: str | None = None
    superlink: str | None = Field(default=None, description="host:port to dial")
    ca_certificate: str | None = Field(default=None, description="PEM")
    node_id: int | None = None
    partition_id: int | None = None
    num_partitions: int | None = None
    data_tags: list[str] = Field(default_factory=list)
    image: str | None = None
    environment: str | None = None
    runtime_environment: str | None = None
    repo_dir: str | None = None
    flower_app: str | None = None

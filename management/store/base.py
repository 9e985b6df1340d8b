"""The project store interface. SQLite and MongoDB implement it; one contract
test suite (tests/test_store_contract.py) runs against every implementation.

Updates are field-level (`update_project(id, status=...)`) rather than whole-record
writes, so the job runner and an API request changing different fields of the same
project (e.g. `cancel_requested`) never overwrite each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from flops_management.models import (
    Dataset,
    Enrolment,
    Event,
    Project,
    StageRecord,
    Token,
)


class Store(ABC):
    @abstractmethod
    def create_project(self, project: Project) -> None:
        """Insert a new project."""

    @abstractmethod
    def get_project(self, project_id: str, tenant: str | None = None) -> Project:
        """The project; NotFoundError when absent or owned by another tenant.

        `tenant=None` is for the service itself (recovery), never for requests.
        """

    @abstractmethod
    def list_projects(self, tenant: str, limit: int = 100) -> list[Project]:
        """The tenant's projects, newest first."""

    @abstractmethod
    def project_ids(self, tenant: str, prefix: str, limit: int = 2) -> list[str]:
        """Ids of the tenant's projects starting with `prefix` (hex digits only)."""

    @abstractmethod
    def update_project(self, project_id: str, **changes: Any) -> None:
        """Set top-level fields of a project (values are model objects or JSON)."""

    @abstractmethod
    def update_stage(self, project_id: str, stage: StageRecord) -> None:
        """Replace the stage record with the same name."""

    @abstractmethod
    def unfinished_projects(self) -> list[Project]:
        """Projects of every tenant that are queued or running."""

    @abstractmethod
    def running_servers(self) -> list[Project]:
        """Projects of every tenant whose inference server is recorded running."""

    @abstractmethod
    def append_event(self, project_id: str, kind: str, data: dict[str, Any]) -> Event:
        """Add an event; its `seq` is 1, 2, 3... per project."""

    @abstractmethod
    def list_events(
        self, project_id: str, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Events with seq > after, oldest first."""

    @abstractmethod
    def put_token(self, token: Token) -> None:
        """Store an API token (by digest; the token itself is never stored)."""

    @abstractmethod
    def find_token(self, digest: str) -> Token | None:
        """The token with this digest."""

    @abstractmethod
    def put_enrolment(self, enrolment: Enrolment) -> None:
        """Insert a project's enrolment token (by digest, which is unique)."""

    @abstractmethod
    def find_enrolment(self, digest: str) -> Enrolment | None:
        """The enrolment with this digest."""

    @abstractmethod
    def list_enrolments(self, project_id: str) -> list[Enrolment]:
        """A project's enrolments, oldest first (by created_at, then digest)."""

    @abstractmethod
    def update_enrolment(self, digest: str, **changes: Any) -> None:
        """Set top-level fields of an enrolment (values are model objects or JSON);
        NotFoundError when there is no such digest."""

    @abstractmethod
    def claim_enrolment(self, digest: str, **changes: Any) -> bool:
        """Set fields of an enrolment only if it exists, no learner has joined
        with it yet and it is not revoked; whether it did.

        Atomic, so of two learners joining with one token only one gets in.
        `changes` must set `learner`: that is what makes the claim stick.
        """

    @abstractmethod
    def put_dataset(self, dataset: Dataset) -> None:
        """Insert or replace a data tag's metadata."""

    @abstractmethod
    def get_dataset(self, tenant: str, tag: str) -> Dataset | None:
        """A tenant's data tag."""

    @abstractmethod
    def list_datasets(self, tenant: str) -> list[Dataset]:
        """A tenant's data tags, by name."""

    @abstractmethod
    def tenant_index(self, tenant: str) -> int:
        """The tenant's number (1, 2, 3... in order of first use; stable).

        Its code runs under an identity derived from it (flops_management.sandbox).
        """

    @abstractmethod
    def mlflow_name_owner(self, kind: str, name: str) -> str | None:
        """The tenant FLOps created MLflow `kind` ("experiment", ...) `name` for."""

    @abstractmethod
    def claim_mlflow_name(self, kind: str, name: str, tenant: str) -> None:
        """Record that FLOps created `name` for `tenant` (first claim wins)."""

    def close(self) -> None:  # noqa: B027 - optional for implementations
        """Release connections."""


def jsonable(value: Any) -> Any:
    """Model objects (and lists of them) to the JSON form both stores keep."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value

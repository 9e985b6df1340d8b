"""MongoDB store (pymongo): the store of the docker-compose deployment."""

from __future__ import annotations

import contextlib
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from flops.errors import NotFoundError, ServiceUnavailableError
from flops_management.models import (
    Dataset,
    Enrolment,
    Event,
    Project,
    ProjectStatus,
    ServerStatus,
    StageRecord,
    Token,
    utcnow,
)
from flops_management.store.base import Store, jsonable

_UNFINISHED = [ProjectStatus.QUEUED.value, ProjectStatus.RUNNING.value]
# BSON integers are signed 64-bit; Flower's node and run ids are unsigned 64-bit
# (half of them above this), and they are in events, enrolments and a job's
# runtime record. Wider integers are kept as Decimal128, exact to 34 digits.
_INT64 = range(-(2**63), 2**63)


def to_bson(value: Any) -> Any:
    """A stored document: integers beyond 64 bits as Decimal128."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return Decimal128(str(value))
    if isinstance(value, dict):
        return {key: to_bson(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_bson(item) for item in value]
    return value


def from_bson(value: Any) -> Any:
    """A read document: Decimal128 back to the integer it holds (FLOps stores
    no other decimals)."""
    if isinstance(value, Decimal128):
        return int(value.to_decimal())
    if isinstance(value, dict):
        return {key: from_bson(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_bson(item) for item in value]
    return value


def _stored(value: Any) -> Any:
    return to_bson(jsonable(value))


def _read(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as a model reads it: without MongoDB's own keys."""
    return {key: from_bson(value) for key, value in doc.items() if key != "_id"}


class MongoStore(Store):
    def __init__(self, url: str, client: Any | None = None) -> None:
        """`client` lets tests pass a named fake (mongomock); production passes none."""
        self._client = client or MongoClient(
            url, serverSelectionTimeoutMS=5000, tz_aware=True
        )
        database = self._client.get_default_database("flops")
        self._projects = database["projects"]
        self._events = database["events"]
        self._tokens = database["tokens"]
        self._datasets = database["datasets"]
        self._enrolments = database["enrolments"]
        self._tenants = database["tenants"]
        self._counters = database["counters"]
        self._mlflow_names = database["mlflow_names"]
        try:
            self._projects.create_index(
                [("tenant", ASCENDING), ("created_at", DESCENDING)]
            )
            self._projects.create_index([("status", ASCENDING)])
            self._events.create_index(
                [("project_id", ASCENDING), ("seq", ASCENDING)], unique=True
            )
            self._datasets.create_index(
                [("tenant", ASCENDING), ("tag", ASCENDING)], unique=True
            )
            self._enrolments.create_index([("digest", ASCENDING)], unique=True)
            self._enrolments.create_index(
                [("project_id", ASCENDING), ("created_at", ASCENDING)]
            )
        except PyMongoError as err:
            raise ServiceUnavailableError(
                f"MongoDB at the configured FLOPS_STORE_URL is not usable: {err}"
            ) from err

    @staticmethod
    def _project(doc: dict[str, Any]) -> Project:
        doc = {key: value for key, value in doc.items() if not key.startswith("_")}
        return Project.model_validate(from_bson(doc))

    def create_project(self, project: Project) -> None:
        doc = _stored(project)
        self._projects.insert_one({"_id": project.id, "_event_seq": 0, **doc})

    def get_project(self, project_id: str, tenant: str | None = None) -> Project:
        query: dict[str, Any] = {"_id": project_id}
        if tenant is not None:
            query["tenant"] = tenant
        doc = self._projects.find_one(query)
        if doc is None:
            raise NotFoundError(f"Project {project_id} not found.")
        return self._project(doc)

    def list_projects(self, tenant: str, limit: int = 100) -> list[Project]:
        cursor = (
            self._projects.find({"tenant": tenant})
            .sort("created_at", DESCENDING)
            .limit(limit)
        )
        return [self._project(doc) for doc in cursor]

    def project_ids(self, tenant: str, prefix: str, limit: int = 2) -> list[str]:
        assert all(c in "0123456789abcdef" for c in prefix), "hex prefixes only"
        cursor = (
            self._projects.find(
                {"tenant": tenant, "_id": {"$regex": f"^{prefix}"}}, {"_id": 1}
            )
            .sort("_id", ASCENDING)
            .limit(limit)
        )
        return [str(doc["_id"]) for doc in cursor]

    def update_project(self, project_id: str, **changes: Any) -> None:
        result = self._projects.update_one(
            {"_id": project_id},
            {"$set": {key: _stored(value) for key, value in changes.items()}},
        )
        if result.matched_count == 0:
            raise NotFoundError(f"Project {project_id} not found.")

    def update_stage(self, project_id: str, stage: StageRecord) -> None:
        result = self._projects.update_one(
            {"_id": project_id, "stages.name": stage.name},
            {"$set": {"stages.$": _stored(stage)}},
        )
        if result.matched_count == 0:
            raise NotFoundError(f"Project {project_id} has no stage {stage.name}.")

    def unfinished_projects(self) -> list[Project]:
        cursor = self._projects.find({"status": {"$in": _UNFINISHED}}).sort(
            "created_at", ASCENDING
        )
        return [self._project(doc) for doc in cursor]

    def running_servers(self) -> list[Project]:
        cursor = self._projects.find(
            {"server.status": ServerStatus.RUNNING.value}
        ).sort("created_at", ASCENDING)
        return [self._project(doc) for doc in cursor]

    def append_event(self, project_id: str, kind: str, data: dict[str, Any]) -> Event:
        counter = self._projects.find_one_and_update(
            {"_id": project_id},
            {"$inc": {"_event_seq": 1}},
            projection={"_event_seq": True},
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:
            raise NotFoundError(f"Project {project_id} not found.")
        event = Event(
            seq=counter["_event_seq"],
            project_id=project_id,
            time=utcnow(),
            type=kind,
            data=data,
        )
        self._events.insert_one(_stored(event))
        return event

    def list_events(
        self, project_id: str, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        cursor = (
            self._events.find({"project_id": project_id, "seq": {"$gt": after}})
            .sort("seq", ASCENDING)
            .limit(limit)
        )
        return [Event.model_validate(_read(doc)) for doc in cursor]

    def put_token(self, token: Token) -> None:
        self._tokens.replace_one(
            {"_id": token.digest},
            {"_id": token.digest, **token.model_dump(mode="json")},
            upsert=True,
        )

    def find_token(self, digest: str) -> Token | None:
        doc = self._tokens.find_one({"_id": digest})
        return Token.model_validate(_read(doc)) if doc else None

    @staticmethod
    def _enrolment(doc: dict[str, Any]) -> Enrolment:
        return Enrolment.model_validate(_read(doc))

    def put_enrolment(self, enrolment: Enrolment) -> None:
        self._enrolments.insert_one(_stored(enrolment))

    def find_enrolment(self, digest: str) -> Enrolment | None:
        doc = self._enrolments.find_one({"digest": digest})
        return self._enrolment(doc) if doc else None

    def list_enrolments(self, project_id: str) -> list[Enrolment]:
        cursor = self._enrolments.find({"project_id": project_id}).sort(
            [("created_at", ASCENDING), ("digest", ASCENDING)]
        )
        return [self._enrolment(doc) for doc in cursor]

    def update_enrolment(self, digest: str, **changes: Any) -> None:
        result = self._enrolments.update_one(
            {"digest": digest},
            {"$set": {key: _stored(value) for key, value in changes.items()}},
        )
        if result.matched_count == 0:
            raise NotFoundError(f"Enrolment {digest} not found.")

    def claim_enrolment(self, digest: str, **changes: Any) -> bool:
        if changes.get("learner") is None:
            raise ValueError("A claim must set the learner.")
        # The conditions are in the filter, so MongoDB checks and sets in one
        # atomic step: of two concurrent claims only one matches.
        result = self._enrolments.update_one(
            {"digest": digest, "learner": None, "revoked_at": None},
            {"$set": {key: _stored(value) for key, value in changes.items()}},
        )
        return bool(result.modified_count == 1)

    def put_dataset(self, dataset: Dataset) -> None:
        self._datasets.replace_one(
            {"tenant": dataset.tenant, "tag": dataset.tag},
            dataset.model_dump(mode="json"),
            upsert=True,
        )

    def get_dataset(self, tenant: str, tag: str) -> Dataset | None:
        doc = self._datasets.find_one({"tenant": tenant, "tag": tag})
        return Dataset.model_validate(_read(doc)) if doc else None

    def list_datasets(self, tenant: str) -> list[Dataset]:
        cursor = self._datasets.find({"tenant": tenant}).sort("tag", ASCENDING)
        return [Dataset.model_validate(_read(d)) for d in cursor]

    def tenant_index(self, tenant: str) -> int:
        found = self._tenants.find_one({"_id": tenant})
        if found is not None:
            return int(found["index"])
        counter = self._counters.find_one_and_update(
            {"_id": "tenant"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        with contextlib.suppress(DuplicateKeyError):  # numbered by another request
            self._tenants.insert_one({"_id": tenant, "index": int(counter["value"])})
        doc = self._tenants.find_one({"_id": tenant})
        assert doc is not None
        return int(doc["index"])

    def mlflow_name_owner(self, kind: str, name: str) -> str | None:
        doc = self._mlflow_names.find_one({"_id": f"{kind}:{name}"})
        return None if doc is None else str(doc["tenant"])

    def claim_mlflow_name(self, kind: str, name: str, tenant: str) -> None:
        with contextlib.suppress(DuplicateKeyError):  # first claim wins
            self._mlflow_names.insert_one({"_id": f"{kind}:{name}", "tenant": tenant})

    def close(self) -> None:
        self._client.close()

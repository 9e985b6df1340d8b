"""SQLite store: the embedded default. Records are JSON documents, as in MongoDB."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flops.errors import NotFoundError
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS projects_by_tenant ON projects (tenant, created_at);
CREATE TABLE IF NOT EXISTS events (
    project_id TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (project_id, seq));
CREATE TABLE IF NOT EXISTS tokens (digest TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS enrolments (
    digest TEXT PRIMARY KEY, project_id TEXT NOT NULL, created_at TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS enrolments_by_project ON enrolments (project_id);
CREATE TABLE IF NOT EXISTS tenants (
    idx INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS mlflow_names (
    kind TEXT NOT NULL, name TEXT NOT NULL, tenant TEXT NOT NULL,
    PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS datasets (
    tenant TEXT NOT NULL, tag TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, tag));
"""

_UNFINISHED = (ProjectStatus.QUEUED.value, ProjectStatus.RUNNING.value)


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Private from the first byte (SQLite gives its WAL files the same mode).
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        path.chmod(0o600)
        # One connection shared by the API and job threads, serialised by a lock:
        # writes are small and rare, and WAL keeps the file readable meanwhile.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- projects -----------------------------------------------------------

    def create_project(self, project: Project) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects (id, tenant, status, created_at, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    project.id,
                    project.tenant,
                    project.status.value,
                    project.created_at.isoformat(),
                    project.model_dump_json(),
                ),
            )

    def _load(
        self, db: sqlite3.Connection, project_id: str, tenant: str | None
    ) -> dict[str, Any]:
        row = db.execute(
            "SELECT doc FROM projects WHERE id = ?", (project_id,)
        ).fetchone()
        doc: dict[str, Any] | None = json.loads(row[0]) if row else None
        if doc is None or (tenant is not None and doc["tenant"] != tenant):
            raise NotFoundError(f"Project {project_id} not found.")
        return doc

    def get_project(self, project_id: str, tenant: str | None = None) -> Project:
        with self._lock:
            return Project.model_validate(self._load(self._db, project_id, tenant))

    def list_projects(self, tenant: str, limit: int = 100) -> list[Project]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM projects WHERE tenant = ? "
                "ORDER BY created_at DESC LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [Project.model_validate_json(row[0]) for row in rows]

    def project_ids(self, tenant: str, prefix: str, limit: int = 2) -> list[str]:
        assert all(c in "0123456789abcdef" for c in prefix), "hex prefixes only"
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM projects WHERE tenant = ? AND id LIKE ? "
                "ORDER BY id LIMIT ?",
                (tenant, f"{prefix}%", limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def _write(self, db: sqlite3.Connection, doc: dict[str, Any]) -> None:
        db.execute(
            "UPDATE projects SET status = ?, doc = ? WHERE id = ?",
            (doc["status"], json.dumps(doc), doc["id"]),
        )

    def update_project(self, project_id: str, **changes: Any) -> None:
        with self._tx() as db:
            doc = self._load(db, project_id, None)
            doc.update({key: jsonable(value) for key, value in changes.items()})
            self._write(db, doc)

    def update_stage(self, project_id: str, stage: StageRecord) -> None:
        with self._tx() as db:
            doc = self._load(db, project_id, None)
            doc["stages"] = [
                jsonable(stage) if s["name"] == stage.name else s for s in doc["stages"]
            ]
            self._write(db, doc)

    def unfinished_projects(self) -> list[Project]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM projects WHERE status IN (?, ?) ORDER BY created_at",
                _UNFINISHED,
            ).fetchall()
        return [Project.model_validate_json(row[0]) for row in rows]

    def running_servers(self) -> list[Project]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM projects "
                "WHERE json_extract(doc, '$.server.status') = ? ORDER BY created_at",
                (ServerStatus.RUNNING.value,),
            ).fetchall()
        return [Project.model_validate_json(row[0]) for row in rows]

    # -- events -------------------------------------------------------------

    def append_event(self, project_id: str, kind: str, data: dict[str, Any]) -> Event:
        with self._tx() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE project_id = ?",
                (project_id,),
            ).fetchone()
            event = Event(
                seq=last + 1, project_id=project_id, time=utcnow(), type=kind, data=data
            )
            db.execute(
                "INSERT INTO events (project_id, seq, doc) VALUES (?, ?, ?)",
                (project_id, event.seq, event.model_dump_json()),
            )
        return event

    def list_events(
        self, project_id: str, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM events WHERE project_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (project_id, after, limit),
            ).fetchall()
        return [Event.model_validate_json(row[0]) for row in rows]

    # -- enrolments ---------------------------------------------------------

    def put_enrolment(self, enrolment: Enrolment) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO enrolments (digest, project_id, created_at, doc) "
                "VALUES (?, ?, ?, ?)",
                (
                    enrolment.digest,
                    enrolment.project_id,
                    enrolment.created_at.isoformat(),
                    enrolment.model_dump_json(),
                ),
            )

    def find_enrolment(self, digest: str) -> Enrolment | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM enrolments WHERE digest = ?", (digest,)
            ).fetchone()
        return Enrolment.model_validate_json(row[0]) if row else None

    def list_enrolments(self, project_id: str) -> list[Enrolment]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM enrolments WHERE project_id = ? "
                "ORDER BY created_at, digest",
                (project_id,),
            ).fetchall()
        return [Enrolment.model_validate_json(row[0]) for row in rows]

    def _set_enrolment(
        self, db: sqlite3.Connection, doc: dict[str, Any], changes: dict[str, Any]
    ) -> None:
        doc.update({key: jsonable(value) for key, value in changes.items()})
        # The column orders list_enrolments, so it follows the document.
        created = jsonable(changes["created_at"]) if "created_at" in changes else None
        db.execute(
            "UPDATE enrolments SET created_at = COALESCE(?, created_at), doc = ? "
            "WHERE digest = ?",
            (created, json.dumps(doc), doc["digest"]),
        )

    def update_enrolment(self, digest: str, **changes: Any) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT doc FROM enrolments WHERE digest = ?", (digest,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Enrolment {digest} not found.")
            self._set_enrolment(db, json.loads(row[0]), changes)

    def claim_enrolment(self, digest: str, **changes: Any) -> bool:
        if changes.get("learner") is None:
            raise ValueError("A claim must set the learner.")
        # Read and write in one IMMEDIATE transaction: a concurrent claim waits
        # for it, then sees the learner set.
        with self._tx() as db:
            row = db.execute(
                "SELECT doc FROM enrolments WHERE digest = ?", (digest,)
            ).fetchone()
            doc: dict[str, Any] | None = json.loads(row[0]) if row else None
            if doc is None or doc["learner"] is not None:
                return False
            if doc["revoked_at"] is not None:
                return False
            self._set_enrolment(db, doc, changes)
        return True

    # -- tokens and datasets ------------------------------------------------

    def put_token(self, token: Token) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO tokens (digest, doc) VALUES (?, ?)",
                (token.digest, token.model_dump_json()),
            )

    def find_token(self, digest: str) -> Token | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM tokens WHERE digest = ?", (digest,)
            ).fetchone()
        return Token.model_validate_json(row[0]) if row else None

    def put_dataset(self, dataset: Dataset) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO datasets (tenant, tag, doc) VALUES (?, ?, ?)",
                (dataset.tenant, dataset.tag, dataset.model_dump_json()),
            )

    def get_dataset(self, tenant: str, tag: str) -> Dataset | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM datasets WHERE tenant = ? AND tag = ?", (tenant, tag)
            ).fetchone()
        return Dataset.model_validate_json(row[0]) if row else None

    def list_datasets(self, tenant: str) -> list[Dataset]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM datasets WHERE tenant = ? ORDER BY tag", (tenant,)
            ).fetchall()
        return [Dataset.model_validate_json(row[0]) for row in rows]

    def tenant_index(self, tenant: str) -> int:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO tenants (name) VALUES (?)", (tenant,))
            (index,) = db.execute(
                "SELECT idx FROM tenants WHERE name = ?", (tenant,)
            ).fetchone()
        return int(index)

    def mlflow_name_owner(self, kind: str, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT tenant FROM mlflow_names WHERE kind = ? AND name = ?",
                (kind, name),
            ).fetchone()
        return str(row[0]) if row else None

    def claim_mlflow_name(self, kind: str, name: str, tenant: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO mlflow_names (kind, name, tenant) "
                "VALUES (?, ?, ?)",
                (kind, name, tenant),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

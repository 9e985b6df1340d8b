"""One contract for every store.

Runs against SQLite always; against MongoDB through mongomock, a named fake
(MongoDB cannot be installed on these machines); and against a real MongoDB
server when FLOPS_TEST_MONGO_URI is set.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flops.errors import NotFoundError
from flops_management.models import (
    Dataset,
    Enrolment,
    InferenceServer,
    MlflowInfo,
    Project,
    ProjectStatus,
    ServerStatus,
    StageStatus,
    Token,
)
from flops_management.store import Store, open_store
from flops_management.store.mongo import MongoStore

BACKENDS = ["sqlite", "mongomock-fake"]
if os.environ.get("FLOPS_TEST_MONGO_URI"):
    BACKENDS.append("mongodb")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "mongomock-fake" and "concurrent" in request.node.name:
        pytest.skip(
            "mongomock is not thread-safe; real MongoDB (FLOPS_TEST_MONGO_URI) "
            "runs this, its find_one_and_update is atomic"
        )
    if request.param == "sqlite":
        store: Store = open_store(f"sqlite:///{tmp_path / 'flops.db'}")
    elif request.param == "mongomock-fake":
        import mongomock

        store = MongoStore("mongodb://fake/flops", client=mongomock.MongoClient())
    else:
        uri = os.environ["FLOPS_TEST_MONGO_URI"].rstrip("/")
        store = open_store(f"{uri}/flops_test_{uuid.uuid4().hex[:8]}")
    yield store
    store.close()


def project(tenant: str = "t1", **fields: object) -> Project:
    fields.setdefault("id", uuid.uuid4().hex)
    return Project(
        tenant=tenant,
        name="mnist",
        source="/repo",
        requested_config={},
        **fields,
    )  # type: ignore[arg-type]


def test_create_get_and_tenant_isolation(store: Store) -> None:
    p = project()
    store.create_project(p)
    assert store.get_project(p.id, "t1") == p
    assert store.get_project(p.id) == p  # the service itself sees every tenant
    with pytest.raises(NotFoundError):
        store.get_project(p.id, "t2")
    with pytest.raises(NotFoundError):
        store.get_project("nope", "t1")


def test_list_is_per_tenant_newest_first(store: Store) -> None:
    first, second, other = project(), project(), project("t2")
    for p in (first, second, other):
        store.create_project(p)
    assert [p.id for p in store.list_projects("t1")] == [second.id, first.id]
    assert [p.id for p in store.list_projects("t2")] == [other.id]
    assert len(store.list_projects("t1", limit=1)) == 1


def test_field_updates_do_not_clobber_each_other(store: Store) -> None:
    p = project()
    store.create_project(p)
    store.update_project(p.id, status=ProjectStatus.RUNNING, commit="abc")
    store.update_project(p.id, cancel_requested=True)
    store.update_project(p.id, mlflow=MlflowInfo(tracking_uri="http://m", run_id="r1"))
    got = store.get_project(p.id)
    assert (got.status, got.commit, got.cancel_requested) == (
        ProjectStatus.RUNNING,
        "abc",
        True,
    )
    assert got.mlflow is not None and got.mlflow.run_id == "r1"
    with pytest.raises(NotFoundError):
        store.update_project("nope", status=ProjectStatus.FAILED)


def test_stage_update_replaces_only_that_stage(store: Store) -> None:
    p = project()
    store.create_project(p)
    stage = p.stage("train").model_copy(
        update={"status": StageStatus.RUNNING, "log": "round 1"}
    )
    store.update_stage(p.id, stage)
    got = store.get_project(p.id)
    assert (
        got.stage("train").status == StageStatus.RUNNING
        and got.stage("train").log == "round 1"
    )
    assert got.stage("clone").status == StageStatus.PENDING
    assert [s.name for s in got.stages] == [s.name for s in p.stages]


def test_unfinished_projects_span_tenants(store: Store) -> None:
    running, queued, done = project("a"), project("b"), project("a")
    for p in (running, queued, done):
        store.create_project(p)
    store.update_project(running.id, status=ProjectStatus.RUNNING)
    store.update_project(done.id, status=ProjectStatus.SUCCEEDED)
    assert {p.id for p in store.unfinished_projects()} == {running.id, queued.id}


def test_running_servers_span_tenants(store: Store) -> None:
    serving, stopped, never = project("a"), project("b"), project("b")
    for p in (serving, stopped, never):
        store.create_project(p)
    server = InferenceServer(
        url="http://127.0.0.1:8080",
        orchestrator="local",
        model_uri="models:/a.p/1",
        handle={"pid": 4242},
    )
    store.update_project(serving.id, server=server)
    store.update_project(
        stopped.id, server=server.model_copy(update={"status": ServerStatus.STOPPED})
    )
    found = store.running_servers()
    assert [p.id for p in found] == [serving.id]
    assert found[0].server is not None and found[0].server.handle == {"pid": 4242}
    # The handle is service-internal: the API never shows it.
    assert "handle" not in found[0].public()["server"]


def test_events_are_numbered_per_project(store: Store) -> None:
    a, b = project(), project()
    store.create_project(a)
    store.create_project(b)
    for i in range(3):
        store.append_event(a.id, "round_finished", {"round": i + 1})
    store.append_event(b.id, "stage_started", {"stage": "clone"})
    assert [e.seq for e in store.list_events(a.id)] == [1, 2, 3]
    assert [e.data["round"] for e in store.list_events(a.id, after=1)] == [2, 3]
    assert [e.seq for e in store.list_events(b.id)] == [1]
    assert len(store.list_events(a.id, limit=2)) == 2


def test_concurrent_event_appends_get_distinct_numbers(store: Store) -> None:
    p = project()
    store.create_project(p)

    def append() -> None:
        for _ in range(20):
            store.append_event(p.id, "tick", {})

    threads = [threading.Thread(target=append) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in store.list_events(p.id)] == list(range(1, 81))


def test_tokens_and_datasets(store: Store) -> None:
    store.put_token(Token(digest="d1", tenant="t1", admin=True))
    token = store.find_token("d1")
    assert token is not None and token.tenant == "t1" and token.admin
    assert store.find_token("d2") is None
    store.put_dataset(
        Dataset(
            tenant="t1", tag="digits", partitions=2, rows=10, columns=["x"], bytes=5
        )
    )
    store.put_dataset(
        Dataset(
            tenant="t1", tag="digits", partitions=4, rows=10, columns=["x"], bytes=5
        )
    )
    store.put_dataset(
        Dataset(tenant="t2", tag="digits", partitions=1, rows=1, columns=["x"], bytes=5)
    )
    got = store.get_dataset("t1", "digits")
    assert got is not None and got.partitions == 4
    assert [d.tenant for d in store.list_datasets("t2")] == ["t2"]
    assert store.get_dataset("t1", "other") is None


# Microseconds included: they must survive the round trip too.
T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def enrolment(digest: str, project_id: str = "p1", **fields: Any) -> Enrolment:
    fields.setdefault("created_at", T0)
    return Enrolment(
        digest=digest,
        project_id=project_id,
        tenant="t1",
        expires_at=T0 + timedelta(hours=1),
        **fields,
    )


def test_enrolments_round_trip(store: Store) -> None:
    e = enrolment("d1", joined_at=T0, learner="alice", node_id=2**62)
    store.put_enrolment(e)
    got = store.find_enrolment("d1")
    assert got == e
    assert got is not None and got.expires_at == T0 + timedelta(hours=1)
    assert store.find_enrolment("d2") is None


def test_enrolments_are_listed_per_project_oldest_first(store: Store) -> None:
    later = enrolment("a", created_at=T0 + timedelta(seconds=1))
    tie_second, tie_first = enrolment("c"), enrolment("b")
    other = enrolment("d", project_id="p2", created_at=T0 - timedelta(days=1))
    for e in (later, tie_second, tie_first, other):
        store.put_enrolment(e)
    assert [e.digest for e in store.list_enrolments("p1")] == ["b", "c", "a"]
    assert [e.digest for e in store.list_enrolments("p2")] == ["d"]
    assert store.list_enrolments("p3") == []


def test_enrolment_updates_set_fields(store: Store) -> None:
    store.put_enrolment(enrolment("d1", learner="alice"))
    seen = T0 + timedelta(minutes=5)
    store.update_enrolment("d1", last_seen=seen, job_id="j1", node_id=7)
    store.update_enrolment("d1", address="10.0.0.2")
    got = store.find_enrolment("d1")
    assert got is not None
    assert (got.last_seen, got.job_id, got.node_id) == (seen, "j1", 7)
    assert (got.learner, got.address) == ("alice", "10.0.0.2")
    with pytest.raises(NotFoundError):
        store.update_enrolment("nope", last_seen=seen)


def test_enrolment_updates_keep_the_listing_order(store: Store) -> None:
    store.put_enrolment(enrolment("a"))
    store.put_enrolment(enrolment("b", created_at=T0 + timedelta(seconds=1)))
    store.update_enrolment("a", created_at=T0 + timedelta(seconds=2))
    assert [e.digest for e in store.list_enrolments("p1")] == ["b", "a"]


def test_an_enrolment_is_claimed_once(store: Store) -> None:
    store.put_enrolment(enrolment("d1"))
    first = {"learner": "alice", "public_key": "ssh-ed25519 AAAA1", "joined_at": T0}
    assert store.claim_enrolment("d1", **first, address="10.0.0.1")
    later = T0 + timedelta(minutes=1)
    assert not store.claim_enrolment(
        "d1", learner="bob", public_key="ssh-ed25519 AAAA2", joined_at=later
    )
    got = store.find_enrolment("d1")
    assert got is not None
    assert (got.learner, got.public_key, got.joined_at, got.address) == (
        "alice",
        "ssh-ed25519 AAAA1",
        T0,
        "10.0.0.1",
    )


def test_revoked_or_unknown_enrolments_cannot_be_claimed(store: Store) -> None:
    store.put_enrolment(enrolment("d1", revoked_at=T0))
    assert not store.claim_enrolment("d1", learner="alice")
    got = store.find_enrolment("d1")
    assert got is not None and got.learner is None
    assert not store.claim_enrolment("nope", learner="alice")
    assert store.find_enrolment("nope") is None


def test_a_claim_must_set_the_learner(store: Store) -> None:
    store.put_enrolment(enrolment("d1"))
    with pytest.raises(ValueError, match="learner"):
        store.claim_enrolment("d1", address="10.0.0.1")
    got = store.find_enrolment("d1")
    assert got is not None and got.address is None


def test_concurrent_claims_let_one_learner_in(store: Store) -> None:
    store.put_enrolment(enrolment("d1"))
    won: list[str] = []

    def claim(name: str) -> None:
        if store.claim_enrolment("d1", learner=name):
            won.append(name)

    threads = [threading.Thread(target=claim, args=(f"l{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.find_enrolment("d1")
    assert len(won) == 1 and got is not None and got.learner == won[0]


def test_project_ids_by_prefix_stay_within_the_tenant(store: Store) -> None:
    for pid, tenant in (("abc123", "t1"), ("abd456", "t1"), ("abc999", "t2")):
        store.create_project(project(tenant, id=pid))
    assert store.project_ids("t1", "ab") == ["abc123", "abd456"]
    assert store.project_ids("t1", "abc") == ["abc123"]
    assert store.project_ids("t2", "abc") == ["abc999"]
    assert store.project_ids("t1", "f") == []


def test_mlflow_names_are_claimed_once(store: Store) -> None:
    assert store.mlflow_name_owner("experiment", "t1/mnist") is None
    store.claim_mlflow_name("experiment", "t1/mnist", "t1")
    store.claim_mlflow_name("experiment", "t1/mnist", "t2")
    assert store.mlflow_name_owner("experiment", "t1/mnist") == "t1"
    assert store.mlflow_name_owner("registered_model", "t1/mnist") is None


def test_tenants_are_numbered_once_each(store: Store) -> None:
    first, second = store.tenant_index("alpha"), store.tenant_index("beta")
    assert first != second and first >= 1 and second >= 1
    assert store.tenant_index("alpha") == first
    assert store.tenant_index("beta") == second


def test_sqlite_store_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flops.db'}"
    first = open_store(url)
    p = project()
    first.create_project(p)
    first.append_event(p.id, "job_queued", {})
    first.close()
    second = open_store(url)
    assert second.get_project(p.id) == p
    assert len(second.list_events(p.id)) == 1
    second.close()


def test_sqlite_store_gains_the_enrolments_table(tmp_path: Path) -> None:
    # A database from before enrolments existed: opening it adds the table.
    path = tmp_path / "flops.db"
    old = open_store(f"sqlite:///{path}")
    p = project()
    old.create_project(p)
    old.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE enrolments")
    db.close()
    store = open_store(f"sqlite:///{path}")
    store.put_enrolment(enrolment("d1", project_id=p.id))
    assert [e.digest for e in store.list_enrolments(p.id)] == ["d1"]
    assert store.get_project(p.id) == p
    store.close()

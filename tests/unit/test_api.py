"""The REST API through FastAPI's TestClient, with a real SQLite store."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from flops_management.api.main import create_app
from flops_management.settings import Settings


def parquet(tmp_path: Path, rows: int = 10) -> bytes:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": list(range(rows))}), path)
    return path.read_bytes()


def wait_finished(
    client: TestClient, project_id: str, headers: dict[str, str] | None = None
) -> dict:
    for _ in range(200):
        body = client.get(f"/api/projects/{project_id}", headers=headers).json()
        if body["status"] in {"succeeded", "failed", "cancelled"}:
            return body
        time.sleep(0.05)
    raise AssertionError("project did not finish")


def test_health_is_open_everything_else_needs_a_token(client: TestClient) -> None:
    bare = TestClient(client.app)
    assert bare.get("/health").json()["status"] == "ok"
    for method, path in (
        ("GET", "/api/projects"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/data"),
    ):
        response = bare.request(method, path)
        assert response.status_code == 401, path
        assert response.json()["error"]["message"] == "Missing bearer token."
    assert (
        bare.get("/api/projects", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    schema = client.get("/api/openapi.json").json()
    assert (
        "/api/projects" in schema["paths"]
        and schema["info"]["title"] == "FLOps management API"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"repo": "/x", "rounds": 0},
            "'rounds': Input should be greater than or equal to 1",
        ),
        (
            {"repo": "/x", "learners": -1},
            "'learners': Input should be greater than or equal to 1",
        ),
        ({"repo": "/x", "strategy": "fedbest"}, "Unknown strategy 'fedbest'"),
        ({"repo": "/x", "colour": "red"}, "unknown key 'colour'"),
        ({"repo": "/x", "data_tags": ["nope"]}, "data tag 'nope' does not exist"),
        (
            {"repo": "/x", "orchestrator": "mesos"},
            "Unknown orchestrator 'mesos'. Known orchestrators: local",
        ),
        ({"rounds": 2}, "'repo' is required"),
    ],
)
def test_invalid_submissions_are_rejected_and_recorded_with_the_reason(
    client: TestClient, body: dict, message: str
) -> None:
    response = client.post("/api/projects", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert message in error["message"]
    projects = client.get("/api/projects").json()
    if "repo" not in body:  # nothing to record a project for
        assert projects == []
        return
    # Recorded as a failed project carrying the same error; no job ran for it.
    assert [p["id"] for p in projects] == [error["project_id"]]
    assert projects[0]["status"] == "failed" and message in projects[0]["error"]
    assert all(stage["status"] == "pending" for stage in projects[0]["stages"])
    events = client.get(f"/api/projects/{error['project_id']}/events").json()
    assert [e["type"] for e in events] == ["job_rejected"]


def test_data_push_partitions_and_a_bad_push_keeps_the_old_data(
    client: TestClient, tmp_path: Path
) -> None:
    response = client.put(
        "/api/data/digits", params={"partitions": 2}, content=parquet(tmp_path)
    )
    assert response.status_code == 201
    assert response.json()["partitions"] == 2 and response.json()["rows"] == 10
    bad = client.put(
        "/api/data/digits", params={"partitions": 3}, content=b"not parquet"
    )
    assert (
        bad.status_code == 422
        and "not a readable Parquet file" in bad.json()["error"]["message"]
    )
    assert client.get("/api/data/digits").json()["partitions"] == 2
    assert client.put("/api/data/bad tag", content=b"x").status_code == 422
    too_many = client.put(
        "/api/data/x", params={"partitions": 11}, content=parquet(tmp_path)
    )
    assert (
        "Cannot split 10 rows into 11 partitions" in too_many.json()["error"]["message"]
    )


def test_data_tag_needs_a_partition_per_learner(
    client: TestClient, tmp_path: Path
) -> None:
    client.put("/api/data/digits", params={"partitions": 2}, content=parquet(tmp_path))
    response = client.post(
        "/api/projects", json={"repo": "/x", "data_tags": ["digits"], "learners": 3}
    )
    assert response.status_code == 422
    assert (
        "has 2 partitions but 3 learners were requested"
        in response.json()["error"]["message"]
    )


def test_tenants_never_see_each_others_projects(
    client: TestClient, tmp_path: Path
) -> None:
    created = client.post("/api/tokens", json={"tenant": "team-b"})
    assert created.status_code == 201
    other = {"Authorization": f"Bearer {created.json()['token']}"}
    mine = client.post("/api/projects", json={"repo": str(tmp_path / "missing")}).json()
    assert client.get("/api/projects", headers=other).json() == []
    for method, path in (
        ("GET", f"/api/projects/{mine['id']}"),
        ("POST", f"/api/projects/{mine['id']}/cancel"),
        ("GET", f"/api/projects/{mine['id']}/events"),
        ("DELETE", f"/api/projects/{mine['id']}/server"),
    ):
        assert client.request(method, path, headers=other).status_code == 404, path
    # ...and non-admins cannot mint tokens
    assert (
        client.post("/api/tokens", json={"tenant": "x"}, headers=other).status_code
        == 403
    )
    finished = wait_finished(client, mine["id"])
    assert finished["status"] == "failed"
    assert "does not exist" in finished["error"]


def test_a_failed_job_records_stage_events_and_error(
    client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "plain").mkdir()
    project = client.post(
        "/api/projects", json={"repo": str(tmp_path / "plain")}
    ).json()
    assert project["status"] == "queued" and project["name"] == "plain"
    final = wait_finished(client, project["id"])
    assert final["status"] == "failed"
    assert "is not in a git repository" in final["error"]
    clone = next(s for s in final["stages"] if s["name"] == "clone")
    assert clone["status"] == "failed" and clone["started_at"] and clone["finished_at"]
    assert "is not in a git repository" in clone["log"]
    assert all(s["status"] == "pending" for s in final["stages"][1:])
    kinds = [
        e["type"] for e in client.get(f"/api/projects/{project['id']}/events").json()
    ]
    assert kinds[:3] == ["job_queued", "job_started", "stage_started"]
    assert kinds[-2:] == ["stage_failed", "job_failed"]
    # Cancelling a finished project is a conflict, not a silent success.
    assert client.post(f"/api/projects/{project['id']}/cancel").status_code == 409
    # So is stopping an inference server it never had.
    stop = client.delete(f"/api/projects/{project['id']}/server")
    assert stop.status_code == 409
    assert "no running inference server" in stop.json()["error"]["message"]


def test_an_invalid_inference_port_is_rejected_at_once(
    client: TestClient, tmp_path: Path
) -> None:
    bad = client.post(
        "/api/projects",
        json={
            "repo": str(tmp_path / "r"),
            "post_training": {"deploy_inference_server": True, "inference_port": 0},
        },
    )
    assert bad.status_code == 422
    assert "inference_port" in bad.json()["error"]["message"]


def test_event_stream_ends_with_the_final_status(
    client: TestClient, tmp_path: Path
) -> None:
    project = client.post(
        "/api/projects", json={"repo": str(tmp_path / "missing")}
    ).json()
    with client.stream(
        "GET", f"/api/projects/{project['id']}/events", params={"follow": True}
    ) as stream:
        body = "".join(stream.iter_text())
    assert "event: job_queued" in body
    assert body.rstrip().splitlines()[-2] == "event: end"
    assert '"status":"failed"' in body


def test_any_unique_prefix_of_a_project_id_is_accepted(client: TestClient) -> None:
    from flops_management.models import Project

    store = client.app.state.store  # type: ignore[attr-defined]
    for pid in ("abc1230000", "abd4560000"):
        store.create_project(
            Project(id=pid, tenant="local", name="p", source="/r", requested_config={})
        )
    assert client.get("/api/projects/abc").json()["id"] == "abc1230000"
    assert client.get("/api/projects/abd4").json()["id"] == "abd4560000"
    assert client.get("/api/projects/abd4/events").status_code == 200
    ambiguous = client.get("/api/projects/ab")
    assert ambiguous.status_code == 409
    assert "more than one project id" in ambiguous.json()["error"]["message"]
    assert client.get("/api/projects/ab%25").status_code == 404
    assert client.get("/api/projects/ffff").status_code == 404


def test_active_projects_per_tenant_are_bounded(tmp_path: Path) -> None:
    from flops_management.models import Project, ProjectStatus

    settings = Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri="http://127.0.0.1:9",
        max_active_jobs_per_tenant=2,
    )
    with TestClient(create_app(settings)) as client:
        token = settings.token_file.read_text().strip()
        client.headers["Authorization"] = f"Bearer {token}"
        store = client.app.state.store  # type: ignore[attr-defined]
        for index in range(2):  # queued and running count; finished ones do not
            store.create_project(
                Project(
                    id=f"{index:032x}",
                    tenant="local",
                    name="p",
                    source="/r",
                    requested_config={},
                    status=ProjectStatus.RUNNING if index else ProjectStatus.QUEUED,
                )
            )
        answer = client.post("/api/projects", json={"repo": str(tmp_path / "r")})
        assert answer.status_code == 422
        message = answer.json()["error"]["message"]
        assert "FLOPS_MAX_ACTIVE_JOBS_PER_TENANT=2" in message
        assert len(client.get("/api/projects").json()) == 2


def test_an_upload_streams_to_disk_and_stops_at_the_limit(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri="http://127.0.0.1:9",
        max_upload_bytes=64 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        token = settings.token_file.read_text().strip()
        client.headers["Authorization"] = f"Bearer {token}"

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(100):
                yield b"x" * 4096

        answer = client.put("/api/data/big", content=chunks())
        assert answer.status_code == 413
        assert "FLOPS_MAX_UPLOAD_BYTES" in answer.json()["error"]["message"]
        assert not list((settings.data_dir).glob("*.upload"))
        small = client.put("/api/data/small", content=parquet(tmp_path, rows=10))
        assert small.status_code == 201

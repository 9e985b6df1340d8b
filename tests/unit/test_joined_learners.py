"""Joined learners through the API (FastAPI's TestClient, a real SQLite store):
the owner's enrolment tokens, a device's join and assignment, revocation; and
the device's side (flops.joining, `flops learner join`'s command lines)."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flops import joining
from flops.errors import AuthError, ConfigError, FlopsError
from flops.node_key import NodeKey
from flops_cli.commands import learner as learner_cli
from flops_management.enrolment import ca_fingerprint
from flops_management.models import Project, ProjectStatus, utcnow
from flops_management.store import Store


def store_of(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def make_project(client: TestClient, joined: int = 2, learners: int = 3) -> str:
    project_id = uuid.uuid4().hex
    config = {"learners": learners, "joined_learners": joined, "data_tags": ["d"]}
    store_of(client).create_project(
        Project(
            id=project_id,
            tenant="local",
            name="p",
            source="/repo",
            requested_config=config,
            status=ProjectStatus.RUNNING,
        )
    )
    return project_id


def enrol(client: TestClient, project_id: str, count: int = 1) -> list[str]:
    response = client.post(
        f"/api/projects/{project_id}/enrolments", json={"learners": count}
    )
    assert response.status_code == 201, response.text
    tokens: list[str] = response.json()["tokens"]
    return tokens


def device(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def public_key(tmp_path: Path, name: str = "node.key") -> str:
    return NodeKey.create(tmp_path / name).public_key


def join(client: TestClient, project_id: str, token: str, name: str, key: str) -> Any:
    bare = TestClient(client.app)  # no tenant token: the device has none
    return bare.post(
        f"/api/join/{project_id}",
        json={"name": name, "public_key": key},
        headers=device(token),
    )


def test_a_device_joins_waits_for_the_job_and_gets_its_assignment(
    client: TestClient, tmp_path: Path
) -> None:
    project_id = make_project(client)
    (token,) = enrol(client, project_id)
    ca = (client.app.state.settings.flower_ca_dir / "ca.crt").read_bytes()  # type: ignore[attr-defined]
    assert token.startswith("flj_") and token.endswith("." + ca_fingerprint(ca))
    # The token itself is not stored, only its digest.
    secret = token.removeprefix("flj_").split(".")[0]
    db = client.app.state.settings.home / "flops.db"  # type: ignore[attr-defined]
    assert secret not in db.read_text(errors="replace")

    key = public_key(tmp_path)
    joined = join(client, project_id, token, "site-a", key)
    assert joined.status_code == 201, joined.text
    assert joined.json() == {"project_id": project_id, "learner": "site-a"}
    # Joining again (a device restarting) is fine; another name with it is not.
    assert join(client, project_id, token, "site-a", key).status_code == 201
    again = join(client, project_id, token, "site-b", public_key(tmp_path, "b"))
    assert again.status_code == 409

    bare = TestClient(client.app)
    waiting = bare.get(f"/api/join/{project_id}/assignment", headers=device(token))
    assert waiting.status_code == 200 and waiting.json()["ready"] is False

    # The job registered the key and runs its Fleet front (what pipeline.joined
    # and the backend record).
    store = store_of(client)
    (record,) = store.list_enrolments(project_id)
    store.update_enrolment(record.digest, job_id=project_id, node_id=42)
    store.update_project(
        project_id,
        config={"learners": 3, "joined_learners": 2, "data_tags": ["d"]},
        runtime={"fleet_address": "10.0.0.1:9443", "image": "reg/p:1"},
    )
    ready = bare.get(f"/api/join/{project_id}/assignment", headers=device(token))
    body = ready.json()
    assert body["ready"] is True
    assert body["superlink"] == "10.0.0.1:9443" and body["node_id"] == 42
    assert body["name"] == "site-a" and body["image"] == "reg/p:1"
    # Placed learners are partitions 0..placed-1; joined ones follow.
    assert (body["partition_id"], body["num_partitions"]) == (1, 3)
    assert body["data_tags"] == ["d"]
    assert body["ca_certificate"].encode().strip() == ca.strip()

    listed = client.get(f"/api/projects/{project_id}/learners").json()
    assert [(row["learner"], row["status"]) for row in listed] == [
        ("site-a", "registered")
    ]
    assert listed[0]["address"] == "testclient" and listed[0]["last_seen"]

    revoked = client.delete(f"/api/projects/{project_id}/learners/site-a")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    cut = bare.get(f"/api/join/{project_id}/assignment", headers=device(token))
    assert cut.status_code == 403
    assert "revoked" in cut.json()["error"]["message"]
    kinds = [e["type"] for e in client.get(f"/api/projects/{project_id}/events").json()]
    assert kinds == ["learner_enrolled", "learner_revoked"]


def test_tokens_are_limited_to_the_projects_joined_learners(
    client: TestClient,
) -> None:
    project_id = make_project(client, joined=2)
    enrol(client, project_id, 2)
    over = client.post(f"/api/projects/{project_id}/enrolments", json={"learners": 1})
    assert over.status_code == 422
    assert "joined_learners" in over.json()["error"]["hint"]
    placed_only = make_project(client, joined=0)
    none = client.post(f"/api/projects/{placed_only}/enrolments", json={})
    assert none.status_code == 422
    # Another tenant's project is not found, as every project route answers.
    other = TestClient(client.app)
    assert (
        other.post(
            f"/api/projects/{project_id}/enrolments",
            json={},
            headers={"Authorization": "Bearer flops_nope"},
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("name", "key", "status", "says"),
    [
        ("site-a", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC", 422, "OpenSSH"),
        ("learner-0", None, 422, "learner-<number>"),
        ("Site A", None, 422, "lowercase"),
    ],
)
def test_a_bad_join_is_refused_saying_why(
    client: TestClient,
    tmp_path: Path,
    name: str,
    key: str | None,
    status: int,
    says: str,
) -> None:
    project_id = make_project(client)
    (token,) = enrol(client, project_id)
    response = join(client, project_id, token, name, key or public_key(tmp_path))
    assert response.status_code == status
    assert says in response.json()["error"]["message"]
    # Nothing was claimed: the token still admits a good learner.
    assert join(client, project_id, token, "ok", public_key(tmp_path, "k")).is_success


def test_forged_expired_and_foreign_tokens_are_refused(
    client: TestClient, tmp_path: Path
) -> None:
    project_id = make_project(client)
    (token,) = enrol(client, project_id)
    key = public_key(tmp_path)
    forged = "flj_" + "A" * 43 + "." + token.rsplit(".", 1)[1]
    assert join(client, project_id, forged, "a", key).status_code == 401
    assert join(client, project_id, "flops_x", "a", key).status_code == 401
    other = make_project(client)
    assert join(client, other, token, "a", key).status_code == 401
    store = store_of(client)
    (record,) = store.list_enrolments(project_id)
    store.update_enrolment(record.digest, expires_at=utcnow() - timedelta(seconds=1))
    expired = join(client, project_id, token, "a", key)
    assert (
        expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    )


def test_a_device_trusts_only_the_ca_its_token_names(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    fingerprint = ca_fingerprint(pem.encode())
    folder = joining.write_ca(tmp_path, pem, fingerprint)
    assert (folder / "ca.crt").read_text().strip() == pem.strip()
    with pytest.raises(AuthError, match="does not match"):
        joining.write_ca(tmp_path, pem.replace("MIIB", "MIIC"), fingerprint)
    with pytest.raises(AuthError, match="not an enrolment token"):
        joining.JoinClient("http://h:1", "p", "flops_abc")
    with pytest.raises(FlopsError, match="not http"):
        joining.JoinClient("file:///etc", "p", "flj_x." + fingerprint)
    assert joining.learner_name("Lab-PC.example.org") == "lab-pc-example-org"


def test_a_device_keeps_its_key_across_restarts(tmp_path: Path) -> None:
    first = joining.node_key(tmp_path)
    assert first.private_path.stat().st_mode & 0o777 == 0o600
    assert joining.node_key(tmp_path).public_key == first.public_key


ASSIGNMENT: dict[str, Any] = {
    "superlink": "10.0.0.1:9443",
    "partition_id": 2,
    "num_partitions": 3,
    "flower_app": None,
    "image": "reg.example/p/fl-actor:1",
    "environment": "/srv/envs/e1",
    "runtime_environment": "/srv/envs/rt",
    "repo_dir": "/srv/jobs/j/checkout",
}


def test_the_learner_runs_from_the_image_with_its_data_read_only(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    file = tmp_path / "x.parquet"
    joined = joining.Joined(ASSIGNMENT, tmp_path / "node.key", tmp_path / "tls")
    args = learner_cli.image_args(
        "/usr/bin/podman", ASSIGNMENT, "site-a", {"a": folder, "b": file}, joined
    )
    assert args == [
        "/usr/bin/podman", "run", "--rm", "--network", "host",
        "--name", "flops-learner-site-a",
        "--volume", f"{folder}:/data/a:ro",
        "--volume", f"{file}:/data/b/x.parquet:ro",
        "--volume", f"{tmp_path / 'tls'}:/tls:ro",
        "--volume", f"{tmp_path / 'node.key'}:/node-key:ro",
        "reg.example/p/fl-actor:1", "learner",
        "--superlink", "10.0.0.1:9443", "--name", "site-a",
        "--partition-id", "2", "--num-partitions", "3",
        "--data-dir", "/data", "--tls-dir", "/tls", "--node-key", "/node-key",
    ]  # fmt: skip
    assert "--publish" not in args and "-p" not in args  # a learner listens nowhere


def test_the_learner_runs_from_the_jobs_environments_on_a_shared_host(
    tmp_path: Path,
) -> None:
    joined = joining.Joined(ASSIGNMENT, tmp_path / "node.key", tmp_path / "tls")
    args = learner_cli.environment_args(ASSIGNMENT, "site-a", tmp_path / "d", joined)
    assert args == [
        "/srv/envs/rt/bin/python", "-m", "flops.actor", "learner",
        "--superlink", "10.0.0.1:9443", "--name", "site-a",
        "--partition-id", "2", "--num-partitions", "3",
        "--data-dir", str(tmp_path / "d"),
        "--tls-dir", str(tmp_path / "tls"),
        "--node-key", str(tmp_path / "node.key"),
        "--repo-dir", "/srv/jobs/j/checkout",
        "--worker-python", "/srv/envs/e1/bin/python",
    ]  # fmt: skip
    # Not on the service's host, and no image: it says what to do.
    with pytest.raises(FlopsError, match="orchestrator = docker"):
        learner_cli.choose_runner(
            learner_cli.Runner.auto, {**ASSIGNMENT, "image": None}
        )
    assert (
        learner_cli.choose_runner(learner_cli.Runner.auto, ASSIGNMENT)
        is learner_cli.Runner.image
    )


def test_data_is_a_parquet_file_or_a_folder_of_them(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.parquet"):
        learner_cli.parse_data([f"a={empty}"])
    with pytest.raises(ConfigError, match="not TAG=PATH"):
        learner_cli.parse_data(["nothing"])
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(ConfigError, match="neither a Parquet file"):
        learner_cli.parse_data([f"a={tmp_path / 'x.csv'}"])
    file = tmp_path / "x.parquet"
    file.write_bytes(b"PAR1")
    data = learner_cli.parse_data([f"a={file}"])
    folder = learner_cli.data_folder(tmp_path / "state", data)
    assert (folder / "a" / "x.parquet").resolve() == file


def test_the_image_entrypoint_joins_then_runs_the_assigned_learner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`podman run IMAGE python3 -m flops.actor learner --join URL ...`: the
    join (stubbed here; tests/integration drives the real one) fills in the
    SuperLink, TLS folder, node key and partition the learner then runs with."""
    from flops import actor

    token = "flj_" + "s" * 43 + "." + "0" * 64
    seen: dict[str, Any] = {}

    def fake_join(client: joining.JoinClient, name: str, state: Path, *_: Any,
                  **__: Any) -> joining.Joined:  # fmt: skip
        seen.update(url=client.api_url, project=client.project_id, name=name)
        return joining.Joined(
            {**ASSIGNMENT, "flower_app": None}, state / "node.key", state / "tls"
        )

    monkeypatch.setattr(joining, "join", fake_join)
    monkeypatch.setattr(
        actor,
        "supervise",
        lambda pairs: seen.update(cmds=[pairs[0].server, pairs[0].executor]) or 0,
    )
    with pytest.raises(SystemExit) as exited:
        actor.main([
            "learner", "--join", "http://flops.example:8470", "--project", "p1",
            "--token", token, "--name", "Site-A", "--state", str(tmp_path),
        ])  # fmt: skip
    assert exited.value.code == 0
    assert seen["url"] == "http://flops.example:8470" and seen["name"] == "site-a"
    supernode, _executor = seen["cmds"]
    joined = " ".join(supernode)
    assert "--superlink 10.0.0.1:9443" in joined
    assert f"--root-certificates {tmp_path}/tls/ca.crt" in joined
    assert f"--auth-supernode-private-key {tmp_path}/node.key" in joined
    assert "partition-id=2 num-partitions=3" in joined
    # No way in without a token.
    with pytest.raises(SystemExit):
        actor.main(["learner", "--join", "http://h:1", "--project", "p1"])


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_learner_stops_when_the_join_command_is_killed_outright() -> None:
    """`flops learner join` killed with SIGKILL: its learner gets SIGTERM, so
    no SuperNode is left running with the device's key."""
    import signal
    import subprocess
    import time

    import psutil

    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from flops_cli.commands.learner import _die_with_parent\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(60)'], preexec_fn=_die_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the learner outlived its command"
        time.sleep(0.05)

"""Learners that join from their owners' machines, each machine a network
namespace of its own (tests/netns.py): the devices reach the management API
and their job's Fleet front over a veth link at the host's site address, never
over loopback, with TLS and Flower's node authentication, and train on data
that only they hold."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flops.app.learner_roster import NO_REPLY, UNREACHABLE
from tests import netns
from tests.helpers import EXAMPLES, make_repo
from tests.stack import FLOPS, Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
]

TOKEN = re.compile(r"^flj_\S+$", re.MULTILINE)
# Long enough for a learner's first task on a busy 2-core machine (a cold
# model worker), short enough that a cut learner costs little.
ROUND_TIMEOUT = 45.0


def split(path: Path, folder: Path, parts: int) -> list[Path]:
    """The data set cut in `parts` files, one per device (its own data)."""
    table = pq.read_table(path)
    size = -(-table.num_rows // parts)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(parts):
        file = folder / f"part-{index}.parquet"
        pq.write_table(table.slice(index * size, size), file)
        files.append(file)
    return files


def api_port(stack: Stack) -> str:
    return stack.env["FLOPS_API_URL"].rsplit(":", 1)[1]


def device(
    stack: Stack,
    machine: netns.Netns,
    home: Path,
    project_id: str,
    token: str,
    *args: str,
    env: dict[str, str] | None = None,
    network_only: bool = False,
) -> subprocess.Popen[str]:
    """`flops learner join` run on the device: in its namespace, its own
    FLOPS_HOME (its key), nothing of the service's environment; the job's
    environments unless `args` name another runner."""
    environment = {
        "PATH": os.environ["PATH"],
        "FLOPS_HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        **(env or {}),
    }
    runner = [] if "--runner" in args else ["--runner", "environment"]
    command = [
        FLOPS, "learner", "join", project_id, "--token", token,
        "--api-url", f"http://{netns.SITE_ADDRESS}:{api_port(stack)}",
        *runner, *args,
    ]  # fmt: skip
    return subprocess.Popen(
        machine.enter(command) if network_only else machine.command(command),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """The device's command and all it started (its learner, SuperNode,
    executor, model worker): none may outlive the test."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        for child in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    proc.wait()


@pytest.fixture
def machines() -> Iterator[list[netns.Netns]]:
    with ExitStack() as stack:
        yield [stack.enter_context(netns.netns("flops-dev")) for _ in range(3)]


def test_two_learners_join_from_their_machines_and_train_over_tls(
    stack: Stack,
    digits: str,
    digits_file: Path,
    machines: list[netns.Netns],
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", EXAMPLES / "mnist-sklearn")
    submitted = stack.flops(
        "project", "submit", str(repo), "--rounds", "2", "--learners", "3",
        "--joined-learners", "2", "--data-tag", digits,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    project_id = submitted.stdout.strip()

    enrolled = stack.flops("project", "enrol", project_id, "--learners", "2")
    assert enrolled.returncode == 0, enrolled.stderr
    tokens = TOKEN.findall(enrolled.stdout)
    assert len(tokens) == 2
    assert f"flops learner join {project_id}" in enrolled.stdout
    # Only two learners join this project: a third token is refused.
    extra = stack.flops("project", "enrol", project_id)
    assert extra.returncode == 1
    assert "joined_learners" in extra.stderr

    data = split(digits_file, tmp_path / "owners", 2)
    site_a, site_b, intruder = machines
    learners = [
        device(
            stack, machine, tmp_path / name, project_id, token,
            "--name", name, "--data", f"digits={file}",
        )
        for machine, name, token, file in zip(
            (site_a, site_b), ("site-a", "site-b"), tokens, data, strict=True
        )
    ]  # fmt: skip
    # A machine with a made-up token never gets in.
    forged = "flj_" + "A" * 43 + "." + tokens[0].rsplit(".", 1)[1]
    refused = device(
        stack, intruder, tmp_path / "intruder", project_id, forged,
        "--name", "intruder", "--data", f"digits={data[0]}",
    )  # fmt: skip
    out, _ = refused.communicate(timeout=120)
    assert refused.returncode == 1
    assert "enrolment token is not valid" in out

    try:
        final = stack.wait_for(
            project_id, lambda p: p["status"] not in ("queued", "running"), 900
        )
        outputs = [learner.communicate(timeout=120)[0] for learner in learners]
    finally:
        for learner in learners:
            if learner.poll() is None:
                kill_tree(learner)
    assert final["status"] == "succeeded", final.get("error")
    for learner, output in zip(learners, outputs, strict=True):
        assert learner.returncode == 0, output
        assert "round 1: train" in output
        assert "round 2: evaluate" in output

    events = stack.events(project_id)
    registered = {
        e["data"]["learner"]: e["data"]["address"]
        for e in events
        if e["type"] == "learner_registered"
    }
    assert registered == {"site-a": site_a.address, "site-b": site_b.address}
    # The aggregator heard from both, by name, in every round.
    answered = {
        e["data"].get("learner") for e in events if e["type"] == "learner_joined"
    }
    # ...and from the learner FLOps placed itself, beside them.
    assert answered == {"learner-0", "site-a", "site-b"}

    listed = stack.flops("project", "learners", project_id, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["learner"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"site-a", "site-b"}
    assert rows["site-a"]["address"] == site_a.address
    assert all(row["last_seen"] for row in rows.values())
    # The devices' keys stayed on the devices: private, and unknown to FLOps.
    for name in ("site-a", "site-b"):
        key = tmp_path / name / "learners" / project_id / name / "node.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_text() not in (stack.home / "flops.db").read_text(
            errors="replace"
        )


def test_a_learner_cut_off_mid_round_does_not_stall_the_job_and_rejoins(
    stack: Stack,
    digits_file: Path,
    machines: list[netns.Netns],
    tmp_path: Path,
) -> None:
    """`ip link set down` on one device mid-round: the round ends at
    round_timeout with the other (min_fit 1), the job says who dropped and in
    which round, and the device, back online, answers in a later round."""
    repo = make_repo(tmp_path / "repo", EXAMPLES / "mnist-sklearn")
    config = tmp_path / "flops.toml"
    config.write_text(
        "rounds = 6\nlearners = 2\njoined_learners = 2\nmin_fit = 1\n"
        f'min_evaluate = 1\nround_timeout = {ROUND_TIMEOUT}\ndata_tags = ["digits"]\n'
    )
    submitted = stack.flops("project", "submit", str(repo), "--config", str(config))
    assert submitted.returncode == 0, submitted.stderr
    project_id = submitted.stdout.strip()
    enrolled = stack.flops("project", "enrol", project_id, "--learners", "2")
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    tokens = TOKEN.findall(enrolled.stdout)
    assert len(tokens) == 2, enrolled.stdout + enrolled.stderr
    data = split(digits_file, tmp_path / "owners", 2)
    steady, flaky = machines[:2]
    learners = [
        device(
            stack, machine, tmp_path / name, project_id, token,
            "--name", name, "--data", f"digits={file}",
        )
        for machine, name, token, file in zip(
            (steady, flaky), ("steady", "flaky"), tokens, data, strict=True
        )
    ]  # fmt: skip
    try:
        stack.wait_for(project_id, lambda p: p["progress"]["round"] >= 2, 600)
        flaky.link_down()
        failed = wait_event(stack, project_id, "learner_failed", 120)
        assert failed["data"]["learner"] == "flaky"
        # Whichever comes first: round_timeout, or the SuperLink missing its
        # heartbeats (Flower's NODE_UNAVAILABLE).
        assert failed["data"]["reason"] in (NO_REPLY, UNREACHABLE)
        flaky.link_up()
        final = stack.wait_for(
            project_id, lambda p: p["status"] not in ("queued", "running"), 900
        )
        for learner in learners:
            learner.communicate(timeout=120)
    finally:
        for learner in learners:
            if learner.poll() is None:
                kill_tree(learner)
    assert final["status"] == "succeeded", final.get("error")
    rounds = [
        e["data"] for e in stack.events(project_id) if e["type"] == "round_finished"
    ]
    cut = int(failed["data"]["round"])
    # The round without it ended by round_timeout, not by the job's deadline...
    assert rounds[cut - 1]["metrics"]["round_seconds"] < ROUND_TIMEOUT * 2 + 30
    # ...and once back, it answered again.
    assert any(r["metrics"]["learners_ok"] == 2 for r in rounds[cut:])


def wait_event(
    stack: Stack, project_id: str, kind: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in stack.events(project_id):
            if event["type"] == kind:
                return event
        time.sleep(1)
    raise AssertionError(f"no {kind} event within {timeout}s")


def test_a_revoked_learner_is_cut_off_and_the_job_goes_on(
    stack: Stack,
    digits_file: Path,
    machines: list[netns.Netns],
    tmp_path: Path,
) -> None:
    """The owner revokes a joined learner mid-run: the job unregisters its key,
    the SuperLink refuses it from then on, its device stops saying why, and
    the run finishes with the rest (min_fit 1)."""
    repo = make_repo(tmp_path / "repo", EXAMPLES / "mnist-sklearn")
    config = tmp_path / "flops.toml"
    config.write_text(
        "rounds = 5\nlearners = 2\njoined_learners = 2\nmin_fit = 1\n"
        f'min_evaluate = 1\nround_timeout = {ROUND_TIMEOUT}\ndata_tags = ["digits"]\n'
    )
    submitted = stack.flops("project", "submit", str(repo), "--config", str(config))
    assert submitted.returncode == 0, submitted.stderr
    project_id = submitted.stdout.strip()
    enrolled = stack.flops("project", "enrol", project_id, "--learners", "2")
    # Once printed fewer than two tokens under load: say what it printed.
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    tokens = TOKEN.findall(enrolled.stdout)
    assert len(tokens) == 2, enrolled.stdout + enrolled.stderr
    data = split(digits_file, tmp_path / "owners", 2)
    kept, revoked = [
        device(
            stack, machine, tmp_path / name, project_id, token,
            "--name", name, "--data", f"digits={file}",
        )
        for machine, name, token, file in zip(
            machines[:2], ("kept", "gone"), tokens, data, strict=True
        )
    ]  # fmt: skip
    try:
        stack.wait_for(project_id, lambda p: p["progress"]["round"] >= 2, 600)
        assert control_status_from(machines[2], stack, project_id, tokens[0]) == 403
        cut = stack.flops("project", "revoke", project_id, "gone")
        assert cut.returncode == 0, cut.stderr
        assert "gone revoked" in cut.stdout
        out, _ = revoked.communicate(timeout=120)
        final = stack.wait_for(
            project_id, lambda p: p["status"] not in ("queued", "running"), 900
        )
        kept_out, _ = kept.communicate(timeout=120)
    finally:
        for learner in (kept, revoked):
            if learner.poll() is None:
                kill_tree(learner)
    assert revoked.returncode == 1
    assert "was revoked by the owner" in out
    assert final["status"] == "succeeded", f"{final.get('error')}\n{kept_out}"
    events = stack.events(project_id)
    assert any(
        e["type"] == "learner_revoked" and e["data"]["learner"] == "gone"
        for e in events
    )
    rows = json.loads(
        stack.flops("project", "learners", project_id, "--format", "json").stdout
    )
    assert {r["learner"]: r["status"] for r in rows} == {
        "kept": "registered",
        "gone": "revoked",
    }
    # Its token admits nothing any more.
    again = device(
        stack, machines[2], tmp_path / "again", project_id, tokens[1],
        "--name", "gone", "--data", f"digits={data[1]}",
    )  # fmt: skip
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 1 and "revoked" in out


PROBE = """
import http.client, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
context = ssl.create_default_context(cafile=sys.argv[2])
connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
connection.request("POST", "/v1/control/list-nodes", body=b"")
print(connection.getresponse().status)
"""


def control_status_from(
    machine: netns.Netns, stack: Stack, project_id: str, token: str
) -> int:
    """What another machine gets when it asks the job's Fleet front for the
    SuperLink's Control API (over TLS, checked against the job's CA)."""
    import httpx

    assignment = httpx.get(
        f"{stack.env['FLOPS_API_URL']}/api/join/{project_id}/assignment",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    ca = Path(stack.home) / f"probe-ca-{project_id}.crt"
    ca.write_text(assignment["ca_certificate"])
    probe = subprocess.run(
        machine.command(
            [sys.executable, "-c", PROBE, assignment["superlink"], str(ca)]
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    return int(probe.stdout.strip())

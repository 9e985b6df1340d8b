"""Input reaching git and the filesystem, from a tenant: each attack refused at
the edge with a message naming what was wrong, nothing of the service's leaked."""

from __future__ import annotations

import json

import pytest

from tests.helpers import EXAMPLES
from tests.security.conftest import (
    GitServer,
    Tenant,
    everything_stored,
    service_secrets,
)
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_ref_read_by_git_as_an_option_is_refused(
    stack: Stack, mallory: Tenant, example_url: str
) -> None:
    ref = f"--pathspec-from-file={stack.home / 'token'}"
    answer = mallory.submit({"repo": example_url, "ref": ref, "data_tags": ["digits"]})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert "starts with '-'" in error["message"]
    stored = everything_stored(mallory, error["project_id"])
    assert not any(secret in stored for secret in service_secrets(stack))


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("ext::sh -c cat% /etc/passwd", "holds a space"),
        ("ext::sh%20-c%20id", "transport helpers are refused"),
        ("--upload-pack=id", "starts with '-'"),
        ("file:///etc", "Only admins may submit a path"),
        ("/", "Only admins may submit a path"),
    ],
)
def test_locations_that_reach_the_service_are_refused(
    mallory: Tenant, repo: str, expected: str
) -> None:
    answer = mallory.submit({"repo": repo, "data_tags": ["digits"]})
    assert answer.status_code in (403, 422), answer.text
    assert expected in answer.json()["error"]["message"]


def test_subdirectory_leaving_the_checkout_is_refused(
    mallory: Tenant, example_url: str
) -> None:
    answer = mallory.submit(
        {"repo": f"{example_url}#subdirectory=../../..", "data_tags": ["digits"]}
    )
    assert answer.status_code == 422
    assert "must not contain '..'" in answer.json()["error"]["message"]


def test_admin_path_into_the_service_home_is_refused(stack: Stack) -> None:
    result = stack.flops("project", "submit", str(stack.home / "jobs"))
    assert result.returncode == 1
    assert "holds the service's own state" in result.stderr


def _symlinked(git_server: GitServer, name: str, link: str, target: str) -> str:
    url = git_server.publish(name, EXAMPLES / "mnist-sklearn")
    repo = git_server.root / name
    (repo / link).unlink(missing_ok=True)
    (repo / link).symlink_to(target)
    from tests.helpers import git

    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "link")
    return url


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("requirements.txt", "{home}/token"),
        ("requirements.txt", "/etc/passwd"),
        ("data_manager.py", "/tmp/evil_data_manager.py"),
        ("helpers", "../../../.."),
    ],
)
def test_symlinks_out_of_the_repo_are_refused_by_name(
    stack: Stack,
    mallory: Tenant,
    git_server: GitServer,
    link: str,
    target: str,
) -> None:
    target = target.format(home=stack.home)
    url = _symlinked(git_server, f"link-{link}-{abs(hash(target))}", link, target)
    answer = mallory.submit({"repo": url, "data_tags": ["digits"], "rounds": 1})
    assert answer.status_code == 201, answer.text
    project = mallory.wait(answer.json()["id"])
    assert project["status"] == "failed"
    assert "symlinks that lead out of it" in project["error"]
    assert f"- {link} -> {target}" in project["error"]
    stored = everything_stored(mallory, project["id"])
    assert not any(secret in stored for secret in service_secrets(stack))
    assert "root:x:0:0" not in stored
    stages = {stage["name"]: stage["status"] for stage in project["stages"]}
    assert stages["clone"] == "failed" and stages["check"] == "pending"


def test_a_tenant_cannot_read_another_tenants_projects_or_data(
    stack: Stack, mallory: Tenant, digits: str
) -> None:
    listed = stack.flops("project", "list", "--format", "json")
    local_ids = [p["id"] for p in json.loads(listed.stdout)]
    for project_id in local_ids[:3]:
        assert mallory.request("GET", f"/api/projects/{project_id}").status_code == 404
    assert [d["tag"] for d in mallory.request("GET", "/api/data").json()] == ["digits"]
    info = mallory.request("GET", "/api/info").json()
    assert info["tenant"] == "mallory" and info["admin"] is False

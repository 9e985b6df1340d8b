"""What a submission names as its repo: validated, credentials apart; git's command
lines and environment, by equality."""

from pathlib import Path

import pytest

from flops.config import ref_problem
from flops.errors import SourceError
from flops_management.pipeline import git_commands as cmd
from flops_management.pipeline import repo_url
from flops_management.pipeline.repo_url import RepoCredentials, RepoSource


def test_credentials_are_taken_out_of_https_urls() -> None:
    parsed = repo_url.parse("https://alice:p%40ss@git.example.org/team/x.git")
    assert parsed.display == "https://git.example.org/team/x.git"
    assert parsed.credentials == RepoCredentials("alice", "p@ss")
    assert "p@ss" not in repr(parsed) and "p@ss" not in repr(parsed.credentials)
    token_only = repo_url.parse("https://ghp_TOKEN@host:8443/x.git#subdirectory=m")
    assert token_only.display == "https://host:8443/x.git#subdirectory=m"
    assert token_only.credentials == RepoCredentials("ghp_TOKEN", "")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("ext::sh -c 'cat /etc/passwd'", "holds a space"),
        ("ext::sh%20-c%20id", "transport helpers are refused"),
        ("fd::17", "transport helpers are refused"),
        ("--upload-pack=touch /tmp/x", "holds a space"),
        ("--upload-pack=id", "starts with '-'"),
        ("git@github.com:team/x.git", "ssh is not supported"),
        ("ssh://git@host/x.git", "ssh URLs are not supported"),
        ("ftp://host/x.git", "'ftp://' is not a repository URL"),
        ("http://u:pw@host/x.git", "would cross the network in clear"),
        ("https:///x.git", "without a host"),
        ("https://host/x.git#subdirectory=../../..", "must not contain '..'"),
        ("https://host/x.git#subdirectory=/etc", "relative path inside"),
        ("https://host/x\n.git", "control character"),
        ("https://host/" + "x" * 3000, "longer than 2048"),
        ("~no-such-user-here/repo", "home of a user this host does not have"),
    ],
)
def test_locations_git_could_misread_are_refused(source: str, expected: str) -> None:
    with pytest.raises(SourceError, match=expected.replace("(", r"\(")) as err:
        repo_url.parse(source)
    assert "pw" not in str(err.value)


def test_absolute_subdirectory_is_refused() -> None:
    with pytest.raises(SourceError, match="relative path inside the repository"):
        repo_url.parse("https://host/x.git#subdirectory=//etc")


def test_local_paths_and_file_urls_become_absolute_paths(tmp_path: Path) -> None:
    assert repo_url.parse("r", base=tmp_path) == RepoSource(
        str(tmp_path / "r"), local=True
    )
    assert repo_url.parse(f"file://{tmp_path}/r#subdirectory=a/b") == RepoSource(
        str(tmp_path / "r"), "a/b", local=True
    )


@pytest.mark.parametrize(
    "ref",
    ["--pathspec-from-file=/root/.flops/token", "-b", "a..b", "a b", "x:y", "HEAD~1"],
)
def test_refs_git_would_misread_are_refused(ref: str) -> None:
    assert ref_problem(ref) is not None


@pytest.mark.parametrize("ref", ["main", "v1.2.0", "feature/x", "0123abcd" * 5])
def test_branch_tag_and_commit_refs_pass(ref: str) -> None:
    assert ref_problem(ref) is None


def test_clone_command_ends_options_before_the_url(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert cmd.clone_args(
        "/usr/bin/git", "https://h/x.git", dest, "v1", shallow=True
    ) == [
        "/usr/bin/git",
        "-c",
        "transfer.fsckObjects=true",
        "-c",
        "credential.helper=",
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--single-branch",
        "--branch",
        "v1",
        "--",
        "https://h/x.git",
        str(dest),
    ]
    store = tmp_path / "creds"
    whole = cmd.clone_args(
        "git", "https://h/x.git", dest, None, shallow=False, credential_file=store
    )
    assert whole == [
        "git",
        "-c",
        "transfer.fsckObjects=true",
        "-c",
        "credential.helper=",
        "-c",
        f"credential.helper=store --file={store}",
        "clone",
        "--quiet",
        "--no-checkout",
        "--",
        "https://h/x.git",
        str(dest),
    ]
    assert cmd.checkout_args("git", dest, "abc123") == [
        "git",
        "-C",
        str(dest),
        "checkout",
        "--quiet",
        "--detach",
        "abc123",
        "--",
    ]


def test_git_environment_is_an_allowlist(tmp_path: Path) -> None:
    environ = {
        "PATH": "/usr/bin",
        "FLOPS_REGISTRY_PASSWORD": "secret",
        "FLOPS_ADMIN_TOKEN": "secret",
        "SSH_AUTH_SOCK": "/run/agent",
        "HOME": "/root",
        "https_proxy": "http://proxy:3128",
    }
    env = cmd.git_env(tmp_path, local=False, ca_bundle=None, environ=environ)
    assert env == {
        "https_proxy": "http://proxy:3128",
        "PATH": "/usr/bin",
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "https:http:git",
    }
    local = cmd.git_env(tmp_path, local=True, ca_bundle=Path("/ca.pem"), environ={})
    assert local["GIT_ALLOW_PROTOCOL"] == "https:http:git:file"
    assert local["GIT_SSL_CAINFO"] == "/ca.pem"


def test_credential_store_line_quotes_what_it_holds() -> None:
    line = cmd.credential_line("https://h:8443/team/x.git", "al ice", "p@ss:w/rd")
    assert line == "https://al%20ice:p%40ss%3Aw%2Frd@h:8443\n"

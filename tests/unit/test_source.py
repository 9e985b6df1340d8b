"""Cloning real git repos made in temporary directories."""

from pathlib import Path

import pytest

from flops.errors import SourceError
from flops_management.pipeline import repo_url, source
from flops_management.projects import derive_name
from tests.helpers import git, make_repo


def clone(src: str, ref: str | None, dest: Path) -> tuple[str, str, list[str]]:
    lines: list[str] = []
    sha, subdir = source.clone(repo_url.parse(src), ref, dest, lines.append)
    return sha, subdir, lines


def test_local_repo_at_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"a.txt": "1"})
    sha, subdir, _ = clone(str(repo), None, tmp_path / "out")
    assert sha == git(repo, "rev-parse", "HEAD") and subdir == ""
    assert (tmp_path / "out" / "a.txt").read_text() == "1"


def test_subdirectory_of_a_local_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"examples/m/model_manager.py": "x"})
    _, subdir, lines = clone(str(repo / "examples" / "m"), None, tmp_path / "out")
    assert subdir == "examples/m"
    assert (tmp_path / "out" / "examples" / "m" / "model_manager.py").exists()
    assert "using subdirectory examples/m" in lines


def test_file_url_with_subdirectory_fragment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"sub/f.py": "x"})
    _, subdir, _ = clone(f"file://{repo}#subdirectory=sub", None, tmp_path / "out")
    assert subdir == "sub"


def test_branch_tag_and_commit_refs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"v.txt": "1"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1")
    (repo / "v.txt").write_text("2")
    git(repo, "commit", "-qam", "two")
    git(repo, "checkout", "-qb", "feature")
    (repo / "v.txt").write_text("3")
    git(repo, "commit", "-qam", "three")
    git(repo, "checkout", "-q", "main")
    for ref, expected in (("v1", "1"), ("feature", "3"), (first, "1"), (None, "2")):
        out = tmp_path / f"out-{ref}"
        clone(f"file://{repo}", ref, out)
        assert (out / "v.txt").read_text() == expected, ref


def test_unknown_ref(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"a": "1"})
    with pytest.raises(SourceError, match="'nope'"):
        clone(f"file://{repo}", "nope", tmp_path / "out")


def test_uncommitted_changes_are_noted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"a": "1"})
    (repo / "b").write_text("new")
    _, _, lines = clone(str(repo), None, tmp_path / "out")
    assert any("uncommitted changes" in line for line in lines)
    assert not (tmp_path / "out" / "b").exists()


def test_not_a_git_repo(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="is not in a git repository") as err:
        clone(str(tmp_path / "plain"), None, tmp_path / "out")
    assert "git init" in str(err.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        clone(str(tmp_path / "nope"), None, tmp_path / "out")


def test_url_that_does_not_resolve(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        clone("https://flops-test.invalid/team/repo.git", None, tmp_path / "out")
    assert "Could not clone https://flops-test.invalid/team/repo.git" in str(err.value)
    assert "does not resolve" in str(err.value)


def test_names_and_normalisation(tmp_path: Path) -> None:
    def name(text: str) -> str:
        return derive_name(repo_url.parse(text))

    assert name("https://host/team/MNIST_Demo.git") == "mnist_demo"
    assert name("git://host/team/repo.git") == "repo"
    assert name("https://host/mono.git#subdirectory=ml/Digits") == "digits"
    assert repo_url.parse("repo", base=tmp_path).location == str(tmp_path / "repo")


def test_symlink_out_of_the_checkout_is_refused_by_name(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    repo = make_repo(tmp_path / "repo", files={"a.txt": "1", "sub/b.txt": "2"})
    (repo / "requirements.txt").symlink_to(secret)
    (repo / "sub" / "up").symlink_to("../../secret")
    (repo / "inside").symlink_to("sub/b.txt")  # stays in: allowed
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "links")
    with pytest.raises(SourceError) as err:
        clone(str(repo), None, tmp_path / "out")
    text = str(err.value)
    assert f"- requirements.txt -> {secret}" in text
    assert "- sub/up -> ../../secret" in text
    assert "inside" not in text and "s3cret" not in text


def test_subdirectory_that_leaves_the_checkout_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files={"a.txt": "1"})
    with pytest.raises(SourceError, match=r"must not contain '\.\.'"):
        repo_url.parse(f"file://{repo}#subdirectory=../..")
    (repo / "out").symlink_to(tmp_path)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "link")
    with pytest.raises(SourceError, match="lead out of it"):
        clone(f"file://{repo}#subdirectory=out", None, tmp_path / "o")

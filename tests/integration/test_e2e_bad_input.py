"""Bad input: one clear message in the CLI and in the project's error; the service
keeps serving and nothing already stored is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import EXAMPLES, make_repo
from tests.stack import Stack

pytestmark = pytest.mark.integration


def failed_with(stack: Stack, source: str, *flags: str) -> tuple[str, dict]:
    result, project = stack.submit(source, *flags)
    assert result.returncode == 1, result.stdout + result.stderr
    assert project["status"] == "failed"
    return str(project["error"]), project


def test_url_that_does_not_resolve(stack: Stack, digits: str) -> None:
    error, project = failed_with(
        stack, "https://flops-test.invalid/team/mnist.git", "--data-tag", digits
    )
    assert "Could not clone https://flops-test.invalid/team/mnist.git" in error
    assert "does not resolve" in error
    assert project["stages"][0]["status"] == "failed"


def test_not_a_git_repo(stack: Stack, digits: str, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    error, _ = failed_with(stack, str(plain), "--data-tag", digits)
    assert f"{plain} is not in a git repository" in error


def test_repo_without_model_manager(stack: Stack, digits: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", EXAMPLES / "mnist-sklearn")
    (repo / "model_manager.py").unlink()
    from tests.helpers import git

    git(repo, "commit", "-qam", "remove model manager")
    error, project = failed_with(stack, str(repo), "--data-tag", digits)
    assert "model_manager.py is missing at the repo root" in error
    check = next(s for s in project["stages"] if s["name"] == "check")
    assert check["status"] == "failed" and "model_manager.py is missing" in check["log"]


def test_model_manager_missing_methods(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    source = (EXAMPLES / "mnist-sklearn" / "model_manager.py").read_text()
    broken = source.replace("def fit_model(self)", "def train(self)").replace(
        "def evaluate_model(self)", "def score(self)"
    )
    repo = make_repo(
        tmp_path / "r", EXAMPLES / "mnist-sklearn", {"model_manager.py": broken}
    )
    error, _ = failed_with(stack, str(repo), "--data-tag", digits)
    assert "model_manager.py: ModelManager has no method fit_model()" in error
    assert "model_manager.py: ModelManager has no method evaluate_model()" in error


def test_fit_model_that_raises(stack: Stack, digits: str, tmp_path: Path) -> None:
    source = (EXAMPLES / "mnist-sklearn" / "model_manager.py").read_text()
    broken = source.replace(
        "    def fit_model(self) -> int:\n",
        "    def fit_model(self) -> int:\n"
        "        raise ValueError('labels are missing')\n",
    )
    repo = make_repo(
        tmp_path / "r", EXAMPLES / "mnist-sklearn", {"model_manager.py": broken}
    )
    result, project = stack.submit(str(repo), "--data-tag", digits, "--rounds", "2")
    assert result.returncode == 1
    line = next(
        n
        for n, text in enumerate(broken.splitlines(), 1)
        if "labels are missing" in text
    )
    expected = (
        "fit_model() raised ValueError: labels are missing "
        f"(model_manager.py line {line})"
    )
    assert expected in project["error"]
    assert "Round 1 train: 0 of 2 learners succeeded" in project["error"]
    assert f"learner-0: {expected}" in project["error"]
    train = next(s for s in project["stages"] if s["name"] == "train")
    assert train["status"] == "failed"
    failures = [
        e["data"] for e in stack.events(project["id"]) if e["type"] == "learner_failed"
    ]
    assert sorted(f["learner"] for f in failures) == ["learner-0", "learner-1"]
    assert all(f["reason"] == expected for f in failures)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rounds", "0"], "'rounds': Input should be greater than or equal to 1"),
        (
            ["--learners", "-1"],
            "'learners': Input should be greater than or equal to 1",
        ),
        (
            ["--strategy", "fedbest"],
            "Unknown strategy 'fedbest'. Known strategies: fedavg",
        ),
        (["--data-tag", "no-such-tag"], "data tag 'no-such-tag' does not exist"),
    ],
)
def test_bad_flags_fail_the_submission_with_the_reason(
    stack: Stack, digits: str, tmp_path: Path, flags: list[str], message: str
) -> None:
    result = stack.flops("project", "submit", str(EXAMPLES / "mnist-sklearn"), *flags)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    project_id = result.stderr.split("recorded as failed project ")[1].split()[0]
    project = stack.show(project_id)
    assert project["status"] == "failed"
    assert message in project["error"]


def test_unknown_key_in_config_file(stack: Stack, digits: str, tmp_path: Path) -> None:
    config = tmp_path / "flops.toml"
    config.write_text("rounds = 2\nepochs = 5\n")
    result = stack.flops(
        "project", "submit", str(EXAMPLES / "mnist-sklearn"), "--config", str(config)
    )
    assert result.returncode == 1
    assert "unknown key 'epochs'" in result.stderr
    project_id = result.stderr.split("recorded as failed project ")[1].split()[0]
    assert "unknown key 'epochs'" in stack.show(project_id)["error"]


def test_unknown_key_in_the_repos_flops_toml(
    stack: Stack, digits: str, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "r",
        EXAMPLES / "mnist-sklearn",
        {"flops.toml": "rounds = 2\nlearnrs = 2\n"},
    )
    error, _ = failed_with(stack, str(repo), "--data-tag", digits)
    assert "unknown key 'learnrs'" in error
    assert "the repo's flops.toml" in error


def test_the_service_keeps_serving_and_keeps_what_it_stored(stack: Stack) -> None:
    status = stack.flops("status")
    assert status.returncode == 0, status.stdout
    listed = stack.flops("project", "list", "--format", "json")
    assert listed.returncode == 0

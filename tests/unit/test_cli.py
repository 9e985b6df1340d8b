from pathlib import Path

import pytest
from typer.testing import CliRunner

from flops.contract import check_repo
from flops.errors import ConfigError
from flops_cli import display
from flops_cli.commands.project import build_config, exit_code
from flops_cli.main import app

runner = CliRunner()


def test_init_writes_a_repo_that_passes_the_check(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    report = check_repo(tmp_path / "repo")
    assert report.dependencies.source == "requirements.txt"
    again = runner.invoke(app, ["init", str(tmp_path / "repo")])
    assert isinstance(again.exception, ConfigError)  # main() prints it, exits 1
    assert "is not empty" in again.exception.message


def test_unreachable_api_is_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flops.errors import ServiceUnavailableError
    from flops_cli.client import ApiClient

    monkeypatch.setenv("FLOPS_TOKEN", "t")
    with pytest.raises(ServiceUnavailableError) as err:
        ApiClient("http://127.0.0.1:9").projects()
    assert "not reachable" in err.value.message and "flops up" in str(err.value.hint)


def test_missing_token_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flops.errors import AuthError
    from flops_cli.client import api_token

    monkeypatch.delenv("FLOPS_TOKEN", raising=False)
    monkeypatch.setenv("FLOPS_HOME", str(tmp_path))
    with pytest.raises(AuthError, match="No API token"):
        api_token()


def test_flags_override_the_config_file_and_unset_flags_are_not_sent(
    tmp_path: Path,
) -> None:
    (tmp_path / "flops.toml").write_text('rounds = 5\nstrategy = "fedprox"\n')
    body = build_config(
        "repo",
        tmp_path / "flops.toml",
        {"rounds": 2, "learners": None, "data_tags": []},
    )
    assert body == {
        "rounds": 2,
        "strategy": "fedprox",
        "repo": str(Path("repo").resolve()),
    }
    assert build_config("https://h/x.git", None, {})["repo"] == "https://h/x.git"


def test_exit_codes() -> None:
    assert [exit_code(s) for s in ("succeeded", "failed", "cancelled")] == [0, 1, 3]


def test_round_events_show_progress_and_metrics() -> None:
    line = display.render_event(
        "round_finished",
        {
            "data": {
                "round": 2,
                "rounds": 3,
                "metrics": {"eval_accuracy": 0.91234, "eval_loss": 0.3},
            }
        },
    )
    assert line is not None and "round 2/3" in line and "eval_accuracy=0.9123" in line
    assert display.render_event(
        "stage_failed", {"data": {"stage": "check", "error": "boom"}}
    ) == ("[bold]check    [/bold] [red]failed[/red]\nboom")
    assert display.render_event("learner_joined", {"data": {}}) is None
    build = display.render_event(
        "build_progress", {"data": {"line": "Resolved 9 packages"}}
    )
    assert build is not None and build.endswith("Resolved 9 packages")
    started = display.render_event(
        "flower_run_started", {"data": {"flower_run_id": "42"}}
    )
    assert started is not None and "Flower run 42 started" in started


def plain(markup: str) -> str:
    """What the terminal shows for a line of markup."""
    from rich.text import Text

    return Text.from_markup(markup).plain


def test_build_milestones_images_and_the_server_show_while_following() -> None:
    milestone = display.render_event(
        "build_log",
        {"data": {"line": "linux/amd64: STEP 3/9: COPY x", "progress": True}},
    )
    assert milestone is not None and plain(milestone).endswith("STEP 3/9: COPY x")
    bracketed = display.render_event(
        "build_log", {"data": {"line": "[1/2] STEP 1/3: FROM x", "progress": True}}
    )
    assert bracketed is not None and plain(bracketed).endswith("[1/2] STEP 1/3: FROM x")
    assert display.render_event("build_log", {"data": {"line": "Copying blob"}}) is None
    skipped = display.render_event(
        "image_ready",
        {
            "data": {
                "image": "r/p@sha256:1",
                "platforms": ["linux/amd64"],
                "skipped": True,
            }
        },
    )
    assert skipped is not None and plain(skipped) == (
        "          image r/p@sha256:1 [linux/amd64] (in the registry, build skipped)"
    )
    ready = display.render_event(
        "inference_server_ready", {"data": {"url": "http://127.0.0.1:9000"}}
    )
    assert ready is not None and "http://127.0.0.1:9000/invocations" in ready


def test_show_lists_images_with_their_run_lines_and_the_server() -> None:
    project = {
        "id": "p1", "name": "mnist", "status": "succeeded", "source": "/r",
        "stages": [],
        "images": {
            "fl_actor": {"reference": "reg/a@sha256:1", "platforms": ["linux/amd64"]},
            "inference": {
                "reference": "reg/b@sha256:2",
                "platforms": ["linux/amd64", "linux/arm64"],
                "run": {"podman": "podman run -p 8080:8080 reg/b@sha256:2"},
            },
        },
        "server": {
            "url": "http://127.0.0.1:9000", "status": "running",
            "orchestrator": "docker",
        },
    }  # fmt: skip
    lines = [plain(line) for line in display.project_lines(project)]
    assert "  fl_actor  reg/a@sha256:1 [linux/amd64]" in lines
    assert "  inference reg/b@sha256:2 [linux/amd64, linux/arm64]" in lines
    assert "            podman run -p 8080:8080 reg/b@sha256:2" in lines
    assert any(line.startswith("server   http://127.0.0.1:9000") for line in lines)
    assert "         POST http://127.0.0.1:9000/invocations" in lines


def test_text_from_elsewhere_is_shown_not_read_as_markup() -> None:
    from rich.console import Console

    from flops_cli import display

    project = {
        "id": "abc",
        "name": "x[bold]y",
        "status": "failed",
        "source": "/srv/[red]repo[/red]",
        "stages": [{"name": "clone", "status": "failed"}],
        "error": "[link=https://evil.example]click[/link]",
        "created_at": "2026-12-01T00:00:00",
    }
    console = Console(record=True, width=200)
    for line in display.project_lines(project):
        console.print(line)
    shown = console.export_text()
    assert "/srv/[red]repo[/red]" in shown and "x[bold]y" in shown
    assert "[link=https://evil.example]click[/link]" in shown
    event = {"data": {"stage": "[red]s", "error": "[b]e", "commit": "[i]c"}}
    console.print(display.render_event("stage_failed", event))
    console.print(display.render_event("commit_resolved", event))
    events = console.export_text()
    assert "[red]s" in events and "[b]e" in events and "[i]c" in events

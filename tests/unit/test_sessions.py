"""`make test`'s two sessions (tests/sessions.py) split the suite cleanly."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BASE_USERS, SITE_USERS
from tests.sessions import ROOT, session_args


def test_every_module_runs_in_exactly_one_session() -> None:
    args = session_args(["-k", "x"])
    containers = {Path(a) for a in args["containers"] if a.endswith(".py")}
    ignored = {
        Path(a.removeprefix("--ignore="))
        for a in args["processes"]
        if a.startswith("--ignore=")
    }
    assert containers == ignored
    # Whatever builds images or dials the host's site link is in one session.
    names = {path.stem for path in containers}
    assert set(BASE_USERS) | SITE_USERS <= names
    assert all(path.exists() for path in containers)
    assert str(ROOT / "tests") in args["processes"]
    for session in args.values():
        assert session[-2:] == ["-k", "x"]
    assert args["containers"] != args["processes"]

"""Secret files handed to an actor in its environment (Oakestra's SLAs carry
nothing else): written 0600 in a 0700 folder, gone from the environment the
tenant's code inherits."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flops import actor_files


def test_files_travel_in_variables_and_leave_the_environment(tmp_path: Path) -> None:
    files = {"ca.crt": b"CA\n", "node.key": b"-----BEGIN KEY-----\n\x00\xff"}
    environ = {"PATH": "/usr/bin", **actor_files.encode(files)}
    assert sorted(environ) == ["FLOPS_FILE_CA_CRT", "FLOPS_FILE_NODE_KEY", "PATH"]
    folder = tmp_path / "secrets"
    written = actor_files.materialise(folder, environ)
    assert environ == {"PATH": "/usr/bin"}
    assert {p.name: p.read_bytes() for p in written} == files
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)


def test_names_round_trip() -> None:
    for name in ("superlink.key", "superlink.crt", "ca.crt", "node-1.key"):
        assert actor_files.file_name(actor_files.variable(name)) == name


def test_a_name_that_could_escape_the_folder_is_refused() -> None:
    for name in ("../x", "a/b", "A.KEY", "x_y"):
        with pytest.raises(actor_files.ActorFilesError):
            actor_files.variable(name)


def test_a_variable_that_is_not_base64_is_a_clear_error(tmp_path: Path) -> None:
    environ = {"FLOPS_FILE_CA_CRT": "not base64!"}
    with pytest.raises(actor_files.ActorFilesError, match="FLOPS_FILE_CA_CRT"):
        actor_files.materialise(tmp_path / "s", environ)


def test_the_actor_writes_them_before_it_starts_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flops import actor

    for key, value in actor_files.encode({"ca.crt": b"CA"}).items():
        monkeypatch.setenv(key, value)
    folder = tmp_path / "f"
    with pytest.raises(SystemExit):  # a learner without --superlink: refused
        actor.main(
            [
                "learner",
                "--files-from-env",
                str(folder),
                "--tls-dir",
                str(folder),
                "--node-key",
                "k",
            ]
        )
    assert (folder / "ca.crt").read_bytes() == b"CA"
    import os

    assert "FLOPS_FILE_CA_CRT" not in os.environ

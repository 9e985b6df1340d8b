"""A base image missing from container storage is rebuilt; a storage Buildah
cannot read is named as such (it once surfaced as "debootstrap was not found"
in the compose install, whose Buildah lacked the host's network backend)."""

from __future__ import annotations

from typing import Any

import pytest

from flops.errors import FlopsError
from flops_management.images import base

REF = "localhost/flops/base:bookworm-minbase-r1-amd64"


def answer(monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    def run(args: list[str], **_: Any) -> str:
        assert args[:4] == ["buildah", "inspect", "--type", "image"]
        return output

    monkeypatch.setattr(base.subprocesses, "run", run)


def test_present(monkeypatch: pytest.MonkeyPatch) -> None:
    answer(monkeypatch, '{\n    "Type": "buildah 0.0.1"\n}\n')
    assert base.in_local_storage(REF)


def test_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    answer(monkeypatch, f"Error: importing settings: {REF}: image not known\n")
    assert not base.in_local_storage(REF)


def test_an_unreadable_storage_is_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer(
        monkeypatch,
        f'Error: importing build settings from image "{REF}": could not find '
        '"netavark" in one of [/usr/libexec/podman]\n',
    )
    with pytest.raises(FlopsError) as raised:
        base.in_local_storage(REF)
    assert "cannot read its container storage" in raised.value.message
    assert "netavark" in raised.value.message


def test_warnings_before_the_answer_do_not_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer(
        monkeypatch, 'WARN[0000] some storage warning\n{\n    "Type": "buildah"\n}\n'
    )
    assert base.in_local_storage(REF)


def test_the_compose_base_needs_no_registry(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flops_management.images.registry import Registry
    from flops_management.settings import Settings

    settings = Settings(home=tmp_path, registry_port=1)  # nothing listens there
    bases = base.BaseImages(settings, Registry.from_settings(settings), print)
    made: list[str] = []
    monkeypatch.setattr(bases, "_bootstrap", lambda _p, ref: made.append(ref))
    monkeypatch.setattr(bases, "_local", lambda ref: bool(made))
    assert bases.ensure_local("linux/amd64") == REF
    assert made == [REF]  # bootstrapped under the local name, pushed nowhere
    assert bases.ensure_local("linux/amd64") == REF
    assert made == [REF]  # found the second time

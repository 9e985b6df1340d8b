"""Smoke-test results kept by the repo's files and the environment."""

from __future__ import annotations

import shutil
from pathlib import Path

from flops_management.pipeline.environment import SmokeResult
from flops_management.pipeline.smoke_cache import SmokeCache, content_digest
from flops_management.settings import Settings


def _repo(folder: Path) -> Path:
    (folder / "pkg").mkdir(parents=True)
    (folder / "model_manager.py").write_text("class ModelManager: ...\n")
    (folder / "pkg" / "data.py").write_text("X = 1\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder


def test_the_same_files_anywhere_are_one_key_and_any_change_is_another(
    tmp_path: Path,
) -> None:
    cache = SmokeCache(Settings(home=tmp_path / "home"), "tenant-a")
    env = tmp_path / "envs" / "e1"
    first = _repo(tmp_path / "one")
    copy = tmp_path / "two"
    shutil.copytree(first, copy)
    (copy / ".git" / "HEAD").write_text("another commit, same files\n")
    key = cache.key(first, env, "sklearn", ["scikit-learn"], None)
    assert cache.key(copy, env, "sklearn", ["scikit-learn"], None) == key

    (copy / "pkg" / "data.py").write_text("X = 2\n")
    assert content_digest(copy) != content_digest(first)
    assert cache.key(copy, env, "sklearn", ["scikit-learn"], None) != key
    assert cache.key(first, tmp_path / "envs" / "e2", "sklearn", [], None) != key
    assert cache.key(first, env, "pytorch", ["scikit-learn"], None) != key

    assert cache.get(key) is None
    result = SmokeResult(flavor="sklearn", arrays=2, parameter_bytes=80)
    cache.put(key, result)
    assert cache.get(key) == result
    # Another tenant's results are its own.
    assert SmokeCache(Settings(home=tmp_path / "home"), "tenant-b").get(key) is None


def test_an_unreadable_result_is_a_miss(tmp_path: Path) -> None:
    cache = SmokeCache(Settings(home=tmp_path / "home"), "t")
    cache.folder.mkdir(parents=True)
    (cache.folder / "k.json").write_text("{not json")
    assert cache.get("k") is None


def test_a_symlinked_folder_counts_by_its_target(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "one")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (repo / "data").symlink_to(tmp_path / "a")
    before = content_digest(repo)
    (repo / "data").unlink()
    (repo / "data").symlink_to(tmp_path / "b")
    assert content_digest(repo) != before

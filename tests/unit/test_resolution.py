"""The user's environment: what goes in, the compatibility rules, and every
conflicting pin named at once. The resolver is a fake here (a function of the
requirement list); the real one runs in tests/integration/test_e2e_pinned_repos.py.
"""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from flops.dependencies import DependencySet
from flops_management.pipeline import resolution
from flops_management.pipeline.resolution import CompileFailed


def deps(*requirements: str) -> DependencySet:
    return DependencySet(source="conda.yaml", requirements=requirements)


def test_the_worker_needs_follow_the_repo_and_mlflow_is_the_repos_own() -> None:
    assert resolution.user_requirements(deps("scikit-learn==1.4.2")) == [
        "scikit-learn==1.4.2",
        "numpy",
        "pyarrow>=12",
        "datasets>=2.14,<4",
        resolution.worker_mlflow(),
        "skops>=0.10",
    ]
    # No newer than the service's own MLflow (the tracking server's client).
    import importlib.metadata

    mlflow = importlib.metadata.version("mlflow")
    assert resolution.worker_mlflow() == f"mlflow-skinny<={mlflow}"
    # The repo's own numpy and mlflow pins are used, nothing is added beside them.
    assert resolution.user_requirements(deps("numpy==1.26.4", "mlflow==2.12.1")) == [
        "numpy==1.26.4",
        "mlflow==2.12.1",
        "pyarrow>=12",
        "datasets>=2.14,<4",
    ]


def fake_index(reqs: list[str], constraints: list[str]) -> list[str]:
    """numpy 1.23.5 when pinned (else 2.4.6); pyarrow 26 unless held below 21."""
    names = {Requirement(r).name: r for r in reqs}
    numpy = "1.23.5" if names.get("numpy") == "numpy==1.23.5" else "2.4.6"
    held = "pyarrow<21" in constraints
    return [f"numpy=={numpy}", f"pyarrow=={'20.0.0' if held else '26.0.1'}"]


def test_a_rule_holds_pyarrow_back_for_numpy_1_and_says_why() -> None:
    result = resolution.resolve(["numpy==1.23.5", "pyarrow>=12"], fake_index)
    assert result.pins == ["numpy==1.23.5", "pyarrow==20.0.0"]
    assert result.notes == [
        "numpy<2 is in the set: pyarrow<21 is used (pyarrow 21 and later refuse "
        "NumPy < 2 at import)"
    ]
    assert resolution.resolve(["numpy", "pyarrow"], fake_index).notes == []


CONFLICTS = {
    # no wheel for this Python at all
    "tensorflow==2.10.0": "No solution: tensorflow==2.10.0 has no wheels for cp311",
    # installs alone, collides with the worker's datasets
    "tqdm==4.65.0": "Because datasets>=2.14 depends on tqdm>=4.66.3 and you "
    "require tqdm==4.65.0, we can conclude that your requirements are unsatisfiable.",
}


def conflicting_index(reqs: list[str], constraints: list[str]) -> list[str]:
    for spec, reason in CONFLICTS.items():
        alone = spec == "tqdm==4.65.0" and not any(
            r.startswith("datasets") for r in reqs
        )
        if spec in reqs and not alone:
            raise CompileFailed(reason)
    return [
        "tqdm==4.67.1"
        if Requirement(r).name == "tqdm"
        else f"{Requirement(r).name}==1.0"
        for r in reqs
    ]


def test_every_conflicting_pin_is_named_at_once_with_who_asked_for_what() -> None:
    repo = deps("tensorflow==2.10.0", "tqdm==4.65.0", "pandas==2.2.1")
    wanted = resolution.user_requirements(repo)
    with pytest.raises(CompileFailed):
        resolution.resolve(wanted, conflicting_index)
    error = resolution.diagnose(repo, wanted, conflicting_index, "3.11")
    assert "cannot be installed on Python 3.11: 2 problem(s)" in error.message
    lines = error.message.splitlines()[1:]
    assert lines[0].startswith(
        "- tensorflow==2.10.0: does not install on Python 3.11 by itself"
    )
    assert "has no wheels for cp311" in lines[0]
    assert lines[1].startswith(
        "- tqdm==4.65.0: collides with another requirement (without the pin, "
        "tqdm 4.67.1 is chosen)"
    )
    assert "datasets>=2.14 depends on tqdm>=4.66.3" in lines[1]
    assert "pandas" not in error.message
    assert error.hint is not None and "conda.yaml" in error.hint


def test_a_constraint_never_brings_in_what_the_set_lacks() -> None:
    """torch 2.1 bounds the worker's mlflow-skinny; a repo with its own MLflow 2
    gets no mlflow-skinny beside it (both would write the `mlflow` package),
    but gets the setuptools MLflow 2 imports."""
    seen: list[tuple[list[str], list[str]]] = []

    def index(reqs: list[str], constraints: list[str]) -> list[str]:
        seen.append((reqs, constraints))
        return sorted(
            {"torch==2.1.1", "mlflow==2.12.1", "numpy==1.26.4"}
            | ({"setuptools==80.9.0"} if "setuptools<81" in reqs else set())
        )

    result = resolution.resolve(["torch==2.1.1", "mlflow==2.12.1"], index)
    assert "setuptools==80.9.0" in result.pins
    assert not any("mlflow-skinny" in r for reqs, _ in seen for r in reqs)
    assert seen[-1][1] == []  # no constraint: nothing bounded was there

    def worker_mlflow(reqs: list[str], constraints: list[str]) -> list[str]:
        skinny = "3.6.0" if "mlflow-skinny<3.7" in constraints else "3.17.2"
        return ["numpy==1.26.4", "torch==2.1.1", f"mlflow-skinny=={skinny}"]

    held = resolution.resolve(["torch==2.1.1", "mlflow-skinny"], worker_mlflow)
    assert "mlflow-skinny==3.6.0" in held.pins
    assert any("torch.export.Dim" in note for note in held.notes)

"""The orchestrator contract (tests/orchestrator_contract.py) against the local
backend; the docker backend runs the same suite in test_e2e_docker.py, on the
image that module builds.

The local deployment runs from this test's own Python environment (it holds
flwr, FLOps and scikit-learn), unsandboxed (`dev_unsandboxed_tenant_code`):
the sandbox binds only environments FLOps built, and what is checked here is
the interface, not the sandbox (tests/security covers that).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flops_management.orchestrators import DeploymentSpec, LearnerSpec, get_orchestrator
from flops_management.settings import Settings
from tests.helpers import EXAMPLES, make_repo
from tests.orchestrator_contract import check_contract

pytestmark = pytest.mark.integration


def test_the_local_backend_keeps_the_orchestrator_contract(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", dev_unsandboxed_tenant_code=True)
    repo = make_repo(tmp_path / "repo", EXAMPLES / "mnist-sklearn")
    spec = DeploymentSpec(
        job_id="contract0local0",
        workdir=tmp_path / "job",
        repo_dir=repo,
        learners=(LearnerSpec("learner-0", None), LearnerSpec("learner-1", None)),
        environment=Path(sys.prefix),
    )
    check_contract(get_orchestrator("local", settings), spec)

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


def _local(tmp_path: Path, job_id: str) -> tuple[Settings, DeploymentSpec]:
    """Two learners from this test's own environment, unsandboxed."""
    # The contract checks that joined learners are accepted; a backend accepts
    # them only once it knows the address they dial (unset, it refuses: unit
    # tests cover that).
    settings = Settings(
        home=tmp_path / "home",
        dev_unsandboxed_tenant_code=True,
        fleet_host="127.0.0.1",
    )
    repo = make_repo(tmp_path / "repo", EXAMPLES / "mnist-sklearn")
    return settings, DeploymentSpec(
        job_id=job_id,
        workdir=tmp_path / "job",
        repo_dir=repo,
        learners=(LearnerSpec("learner-0", None), LearnerSpec("learner-1", None)),
        environment=Path(sys.prefix),
    )


def test_the_local_backend_keeps_the_orchestrator_contract(tmp_path: Path) -> None:
    settings, spec = _local(tmp_path, "contract0local0")
    check_contract(get_orchestrator("local", settings), spec)


def test_only_registered_learners_join_and_a_revoked_one_is_cut_off(
    tmp_path: Path,
) -> None:
    """Flower's node authentication, on by default: the learners FLOps placed
    are registered by name; a SuperNode with a key nobody registered is refused
    (and the SuperLink's refusal is what the job's `node_refused` event reads);
    unregistering a learner's node cuts it off while the others stay."""
    import subprocess
    import time

    from flops.node_key import NodeKey
    from flops_management.orchestrators.node_auth import refusal
    from flops_management.orchestrators.ports import free_port
    from flops_management.orchestrators.superlink_control import SuperLinkControl

    settings, spec = _local(tmp_path, "contract0auth00")
    deployment = get_orchestrator("local", settings).submit(spec)
    try:
        assert deployment.root_certificates is not None
        assert set(deployment.nodes) == {"learner-0", "learner-1"}
        with SuperLinkControl(
            deployment.control_address, deployment.root_certificates
        ) as control:
            listed = {n["name"]: int(n["node_id"]) for n in control.nodes()}
        assert listed == deployment.nodes

        rogue = NodeKey.create(tmp_path / "rogue" / "node.key")
        refused = subprocess.run(
            [
                f"{sys.prefix}/bin/flower-supernode",
                "--root-certificates", str(deployment.root_certificates),
                "--auth-supernode-private-key", str(rogue.private_path),
                "--superlink", deployment.control_address,
                "--isolation", "process", "--host", "127.0.0.1",
                "--port", str(free_port()),
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "2004" in refused.stdout + refused.stderr
        deadline = time.monotonic() + 30
        seen: list[tuple[str, int]] = []
        while not seen and time.monotonic() < deadline:
            seen = [r for line in deployment.logs() if (r := refusal(line.text))]
            time.sleep(0.2)
        assert seen == [("/v1/fleet/activate-node", 2004)]

        with SuperLinkControl(
            deployment.control_address, deployment.root_certificates
        ) as control:
            control.unregister(deployment.nodes["learner-1"])
        deadline = time.monotonic() + 60
        while "learner-1-supernode" not in deployment.exited():
            assert time.monotonic() < deadline, deployment.tail("learner-1-supernode")
            time.sleep(0.2)
        assert "learner-0-supernode" not in deployment.exited()
    finally:
        deployment.cancel()

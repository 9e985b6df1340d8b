"""The orchestrator contract: what every backend's `Deployment` does, checked
the same way against each one (local: tests/integration/test_e2e_examples.py;
docker: tests/integration/test_e2e_docker.py).

A real deployment is placed (the SuperLink, the aggregator and two learners,
idle until a run is started) and driven through the interface only, as the
pipeline drives it: components and their roles, states, logs, the control
address, one learner stopped while the rest go on, cancel, and cleanup after a
cancel. Backend-specific texts are not asserted; the shared enums are.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from flops_management.orchestrators import (
    Capability,
    ComponentState,
    DeploymentSpec,
    LearnerSpec,
    Orchestrator,
    Placement,
    Role,
    Unsupported,
    able,
)

READY_S = 120.0


def _until(check: Callable[[], bool], what: str, timeout: float = READY_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def check_contract(orchestrator: Orchestrator, spec: DeploymentSpec) -> None:
    """`spec` places exactly two learners, learner-0 and learner-1; the
    orchestrator's settings name the Fleet host joined learners dial."""
    assert [learner.name for learner in spec.learners] == ["learner-0", "learner-1"]
    joined = LearnerSpec("learner-9", None, Placement.joined())
    with_joined = replace(spec, learners=(*spec.learners, joined))
    if Capability.JOINED_LEARNERS in orchestrator.capabilities:
        orchestrator.check(with_joined, able())
    else:  # a backend without it says so, before anything starts
        with pytest.raises(Unsupported, match=r"learner-9 \(joined\)"):
            orchestrator.check(with_joined, able())

    deployment = orchestrator.submit(spec)
    runtime_info = deployment.runtime_info()
    try:
        components = deployment.components()
        names = {c.name for c in components}
        roles = [c.role for c in components]
        assert roles.count(Role.AGGREGATOR) == 1
        assert roles.count(Role.LEARNER) == 2
        assert {c.learner for c in components} == {None, "learner-0", "learner-1"}
        for component in components:
            assert deployment.learner_of(component.name) == component.learner
            # Only learners' parts belong to a learner.
            assert (component.learner is None) == (
                component.role in (Role.SUPERLINK, Role.AGGREGATOR)
            )

        def all_running() -> bool:
            states = deployment.status()
            return set(states) == names and all(
                s.state is ComponentState.RUNNING for s in states.values()
            )

        _until(all_running, "every component running")
        assert deployment.exited() == []
        host, _, port = deployment.control_address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5):
            pass  # `flwr run` reaches the Control API there

        seen: set[str] = set()

        def logged() -> bool:
            seen.update(line.component for line in deployment.logs())
            return bool(seen)

        _until(logged, "a log line from a component")
        assert seen <= names
        assert any(deployment.tail(name) for name in names)
        json.dumps(runtime_info)  # stored with the job, for a restarted service

        gone = {c.name for c in components if c.learner == "learner-1"}
        deployment.stop_learner("learner-1")
        _until(lambda: set(deployment.exited()) == gone, "learner-1 alone exited", 60)
        states = deployment.status()
        assert all(not states[name].alive for name in gone)
        assert all(states[name].alive for name in names - gone)
    finally:
        deployment.cancel()
    assert deployment.wait(timeout=60)
    assert not any(s.alive for s in deployment.status().values())
    deployment.cancel()  # twice is safe
    orchestrator.cleanup(runtime_info)  # and so is a restarted service's cleanup

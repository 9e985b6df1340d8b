"""The orchestrator interface's shared words: component states and roles,
placements, and what a backend says it cannot do, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from flops.errors import ConfigError
from flops_management.orchestrators import (
    Capability,
    Component,
    ComponentState,
    ComponentStatus,
    DeploymentSpec,
    LearnerSpec,
    Placement,
    Role,
    Unsupported,
    able,
    check_orchestrator,
    get_orchestrator,
)
from flops_management.orchestrators.base import job_components
from flops_management.orchestrators.docker import container_status
from flops_management.settings import Settings


def _spec(*learners: LearnerSpec) -> DeploymentSpec:
    return DeploymentSpec(
        job_id="j", workdir=Path("/w"), repo_dir=Path("/r"), learners=learners
    )


@pytest.mark.parametrize(
    ("status", "text", "alive"),
    [
        (ComponentStatus.running(), "running", True),
        (ComponentStatus(ComponentState.PENDING), "pending", True),
        (ComponentStatus.exited(3), "exited (code 3)", False),
        (ComponentStatus.exited(None), "exited", False),
        (ComponentStatus(ComponentState.REMOVED), "exited (removed)", False),
    ],
)
def test_a_components_state_reads_as_before_in_messages(
    status: ComponentStatus, text: str, alive: bool
) -> None:
    assert (str(status), status.alive) == (text, alive)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Status": "created"}, ComponentStatus(ComponentState.PENDING)),
        ({"Status": "running", "ExitCode": 0}, ComponentStatus.running()),
        ({"Status": "exited", "ExitCode": 137}, ComponentStatus.exited(137)),
        ({"Status": "dead", "ExitCode": 1}, ComponentStatus.exited(1)),
        ({"Status": "removing"}, ComponentStatus(ComponentState.REMOVED)),
    ],
)
def test_a_containers_engine_state_maps_to_a_component_state(
    state: dict[str, object], expected: ComponentStatus
) -> None:
    assert container_status(state) == expected


def test_components_carry_their_role_and_learner() -> None:
    learners = (LearnerSpec("learner-0", None), LearnerSpec("learner-1", None))
    assert job_components(learners, separate=True) == [
        Component("superlink", Role.SUPERLINK),
        Component("aggregator", Role.AGGREGATOR),
        Component("learner-0-supernode", Role.SUPERNODE, "learner-0"),
        Component("learner-0", Role.LEARNER, "learner-0"),
        Component("learner-1-supernode", Role.SUPERNODE, "learner-1"),
        Component("learner-1", Role.LEARNER, "learner-1"),
    ]
    assert job_components(learners, separate=False) == [
        Component("aggregator", Role.AGGREGATOR),
        Component("learner-0", Role.LEARNER, "learner-0"),
        Component("learner-1", Role.LEARNER, "learner-1"),
    ]


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_placement_the_backend_cannot_honour_is_refused_naming_each_learner(
    backend: str,
) -> None:
    orchestrator = get_orchestrator(backend, Settings())
    spec = _spec(
        LearnerSpec("learner-0", None),
        LearnerSpec("learner-1", None, Placement.on_node("edge-7")),
        LearnerSpec("learner-2", None, Placement.with_labels({"zone": "b"})),
        LearnerSpec("learner-3", None, Placement.joined()),
    )
    with pytest.raises(Unsupported) as caught:
        orchestrator.check(spec, able())
    message = str(caught.value)
    assert f"The {backend} orchestrator cannot" in message
    assert "placing a learner on a named node: learner-1 (node edge-7)" in message
    assert "by node labels: learner-2 (nodes labelled zone=b)" in message
    # Both run the Fleet front that joined learners dial.
    assert "learner-3" not in message
    assert "learner-0" not in message
    assert isinstance(caught.value, ConfigError)  # a 422 at the API, exit 2 in CLI
    # Learners placed anywhere are what every backend does.
    orchestrator.check(_spec(LearnerSpec("learner-0", None)), able())


def test_inference_servers_are_a_capability_named_in_the_refusal() -> None:
    assert (
        Capability.INFERENCE_SERVERS
        in get_orchestrator("local", Settings()).capabilities
    )
    assert able()[Capability.INFERENCE_SERVERS] == [
        "local",
        "docker",
        "kubernetes",
        "oakestra",
    ]
    check_orchestrator("docker", serving=True)


def test_joined_learners_are_not_placed_and_bring_the_fleet_front() -> None:
    learners = (
        LearnerSpec("learner-0", None),
        LearnerSpec("joined-0", None, Placement.joined()),
    )
    assert job_components(learners, separate=False) == [
        Component("aggregator", Role.AGGREGATOR),
        Component("fleet-front", Role.FLEET_FRONT),
        Component("learner-0", Role.LEARNER, "learner-0"),
    ]


def test_joined_learners_need_the_address_they_dial_and_tls() -> None:
    spec = _spec(LearnerSpec("joined-0", None, Placement.joined()))
    with pytest.raises(ConfigError, match="FLOPS_FLEET_HOST"):
        get_orchestrator("local", Settings()).check(spec, able())
    with pytest.raises(Unsupported, match="FLOPS_DEV_INSECURE_FLOWER"):
        get_orchestrator(
            "local", Settings(fleet_host="10.0.0.1", dev_insecure_flower=True)
        ).check(spec, able())
    get_orchestrator("local", Settings(fleet_host="10.0.0.1")).check(spec, able())


@pytest.mark.parametrize("backend", ["local", "docker", "kubernetes"])
def test_placing_in_an_orchestrators_own_cluster_is_refused_by_those_without(
    backend: str,
) -> None:
    orchestrator = get_orchestrator(backend, Settings())
    spec = _spec(
        LearnerSpec("learner-0", None, Placement.in_cluster("site-a")),
        LearnerSpec("learner-1", None, Placement.on_node("w1", "site-b")),
    )
    with pytest.raises(Unsupported) as caught:
        orchestrator.check(spec, able())
    message = str(caught.value)
    assert "placing in one of the orchestrator's own clusters: learner-0 (cluster " in (
        message
    )
    assert "learner-1 (node w1 of cluster site-b)" in message

"""The oakestra orchestrator against the stand-in root orchestrator
(tests/oakestra_standin.py: a stand-in, not Oakestra; every SLA it receives is
checked against its copy of Oakestra's schema). The stand-in places no
containers: these tests check what FLOps asks of Oakestra, in what order, what
it reads back, and that nothing is left behind."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from flops.errors import ConfigError, FlopsError, ServiceUnavailableError
from flops_management.orchestrators import (
    ClusterSpec,
    ComponentState,
    DeploymentSpec,
    LearnerSpec,
    Placement,
    Unsupported,
    able,
    get_orchestrator,
)
from flops_management.orchestrators.base import ServerSpec
from flops_management.orchestrators.oakestra import (
    OakestraOrchestrator,
    OakestraSettings,
)
from flops_management.orchestrators.oakestra_deployment import (
    OakestraDeployment,
    new_lines,
)
from flops_management.settings import Settings
from tests.oakestra_standin import OakestraStandin
from tests.stack import free_port

JOB = "feedc0de" * 4
IMAGE = "registry.example:5000/flops/t/mnist:abc"


@pytest.fixture
def standin() -> Iterator[OakestraStandin]:
    server = OakestraStandin().start()
    yield server
    server.stop()


class Registrar:
    """Stands in for the SuperLinks' Control API (the stand-in runs none):
    records which keys were registered where, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(
        self, address: str, ca: Path, keys: list[tuple[str, bytes]]
    ) -> dict[str, int]:
        assert ca.is_file()
        assert all(pem.startswith(b"-----BEGIN PUBLIC KEY") for _, pem in keys)
        self.calls.append((address, [name for name, _ in keys]))
        return {name: 100 + len(self.calls) for name, _ in keys}


def orchestrator(
    standin: OakestraStandin, tmp_path: Path, registrar: Registrar | None = None
) -> OakestraOrchestrator:
    return OakestraOrchestrator(
        Settings(home=tmp_path / "home", mlflow_actor_uri="http://10.30.0.1:5000"),
        OakestraSettings(
            url=standin.url,
            username=standin.username,
            password=standin.password,
            ready_timeout=5.0,
        ),
        registrar or Registrar(),
    )


def hierarchical(tmp_path: Path) -> DeploymentSpec:
    return DeploymentSpec(
        job_id=JOB,
        workdir=tmp_path / "job",
        repo_dir=tmp_path / "repo",
        learners=(
            LearnerSpec("learner-0", None, Placement.in_cluster("site-a"), "edge-a"),
            LearnerSpec("learner-1", None, Placement.on_node("w2", "site-b"), "edge-b"),
        ),
        image=IMAGE,
        clusters=(
            ClusterSpec("edge-a", Placement.in_cluster("site-a")),
            ClusterSpec("edge-b", Placement.on_node("w2", "site-b")),
        ),
    )


def environment(service: dict[str, object]) -> dict[str, str]:
    pairs = [str(v).split("=", 1) for v in service["environment"]]  # type: ignore[attr-defined]
    return {k: v for k, v in pairs}


def test_a_hierarchical_job_is_one_application_deployed_in_order(
    standin: OakestraStandin, tmp_path: Path
) -> None:
    registrar = Registrar()
    backend = orchestrator(standin, tmp_path, registrar)
    spec = hierarchical(tmp_path)
    backend.check(spec, able())
    deployment = backend.submit(spec)
    assert isinstance(deployment, OakestraDeployment)

    (app,) = standin.apps.values()
    assert app["application_name"] == "flopsfeedc0defeed"
    by_name = {s["microservice_name"]: s for s in standin.services.values()}
    assert sorted(by_name) == [
        "aggregator",
        "cluster0",
        "cluster1",
        "learner0",
        "learner1",
    ]
    # Every service was added before any was deployed: a refused SLA stops
    # the job before anything runs.
    calls = [path for method, path in standin.requests if method == "POST"]
    first_deploy = next(i for i, p in enumerate(calls) if p.endswith("/instance"))
    assert calls[:first_deploy].count("/api/service/") == 5
    # The SuperLinks first, each before its learners' keys were registered.
    aggregator, cluster0, cluster1 = (
        by_name[n]["RR_ip"] for n in ("aggregator", "cluster0", "cluster1")
    )
    assert registrar.calls == [
        (f"{aggregator}:8000", ["edge-a-uplink", "edge-b-uplink"]),
        (f"{cluster0}:8000", ["learner-0"]),
        (f"{cluster1}:8000", ["learner-1"]),
    ]
    assert deployment.control_address == f"{aggregator}:8000"
    assert deployment.clusters["edge-b"].control_address == f"{cluster1}:8000"
    assert deployment.nodes["learner-1"] == 103
    # Placement: Oakestra's direct constraint; learners dial their cluster.
    assert by_name["cluster1"]["constraints"] == [
        {"type": "direct", "cluster": "site-b", "node": "w2"}
    ]
    assert f"{cluster0}:8000" in by_name["learner0"]["cmd"]
    # Secrets: the SuperLink's key to the aggregators alone, each node its own.
    learner = environment(by_name["learner0"])
    assert "FLOPS_FILE_SUPERLINK_KEY" not in learner
    assert b"PRIVATE KEY" in base64.b64decode(learner["FLOPS_FILE_NODE_KEY"])
    assert "FLOPS_FILE_SUPERLINK_KEY" in environment(by_name["cluster0"])
    assert "FLOPS_FILE_NODE_KEY" not in environment(by_name["aggregator"])

    states = deployment.status()
    assert {s.state for s in states.values()} == {ComponentState.RUNNING}
    assert sorted(states) == sorted(c.name for c in deployment.components())

    deployment.cancel()
    assert standin.apps == {} and standin.services == {}
    deployment.cancel()  # again: nothing left, no error


def test_status_and_logs_are_what_oakestra_reports(
    standin: OakestraStandin, tmp_path: Path
) -> None:
    deployment = orchestrator(standin, tmp_path).submit(hierarchical(tmp_path))
    assert isinstance(deployment, OakestraDeployment)
    deployment.refresh_s = 0  # each read asks the root afresh
    service = deployment.services["learner-0"]
    standin.set_instance(service, logs="a\nb\n")
    assert [(line.component, line.text) for line in deployment.logs()] == [
        ("learner-0", "a"),
        ("learner-0", "b"),
    ]
    standin.set_instance(service, logs="a\nb\nc\n", status="FAILED")
    assert [line.text for line in deployment.logs()] == ["c"]
    assert str(deployment.status()["learner-0"]) == "exited (code 1)"
    standin.set_instance(service, status="COMPLETED")
    assert deployment.status()["learner-0"].code == 0
    assert deployment.tail("learner-0", 2) == "b\nc"
    deployment.stop_learner("learner-1")
    assert deployment.status()["learner-1"].state is ComponentState.REMOVED
    deployment.cancel()


def test_a_log_tail_cut_at_oakestras_limit_is_joined_without_repeats() -> None:
    first = "x" * 900 + "\nround 1\nround 2\n"
    second = "cut-off\nround 2\nround 3\n" + "y" * 1000 + "\n"
    assert new_lines("", "round 1\n") == ["round 1"]
    assert new_lines(first[-40:], "round 2\nround 3\n") == ["round 3"]
    # Over 1,024 bytes: the first line is a fragment, dropped.
    assert new_lines(first, second) == ["round 3", "y" * 1000]


def test_a_service_oakestra_cannot_place_fails_with_its_reason_and_leaves_nothing(
    standin: OakestraStandin, tmp_path: Path
) -> None:
    standin.schedule = "NO_QUALIFIED_WORKER_FOUND"
    with pytest.raises(FlopsError) as failed:
        orchestrator(standin, tmp_path).submit(hierarchical(tmp_path))
    assert "aggregator service of Oakestra application flopsfeedc0defeed" in str(
        failed.value
    )
    assert "Oakestra could not schedule it: NO_QUALIFIED_WORKER_FOUND" in str(
        failed.value
    )
    assert standin.apps == {} and standin.services == {}


def test_an_sla_the_root_refuses_names_the_url_and_leaves_nothing(
    standin: OakestraStandin, tmp_path: Path
) -> None:
    # An application of the same name exists: a job whose id shares its first
    # 12 digits (Oakestra answers 409).
    backend = orchestrator(standin, tmp_path)
    other = hierarchical(tmp_path)
    backend.submit(other)
    with pytest.raises(FlopsError) as refused:
        backend.submit(
            DeploymentSpec(
                job_id="feedc0de" * 3 + "00000000",  # same name prefix: 409
                workdir=tmp_path / "job2",
                repo_dir=tmp_path / "repo",
                learners=(LearnerSpec("learner-0", None),),
                image=IMAGE,
            )
        )
    text = str(refused.value)
    assert standin.url in text and "refused POST /api/application/" in text
    assert len(standin.apps) == 1  # the first job's, untouched


def test_an_unreachable_root_is_one_clear_error(tmp_path: Path) -> None:
    backend = OakestraOrchestrator(
        Settings(home=tmp_path),
        OakestraSettings(
            url=f"http://127.0.0.1:{free_port()}", username="u", password="p"
        ),
    )
    with pytest.raises(ServiceUnavailableError) as down:
        backend.submit(hierarchical(tmp_path))
    assert "Oakestra's root orchestrator at http://127.0.0.1:" in str(down.value)
    assert "FLOPS_OAKESTRA_URL" in (down.value.hint or "")


def test_missing_settings_and_unsupported_asks_are_refused_first(
    tmp_path: Path,
) -> None:
    bare = get_orchestrator("oakestra", Settings(home=tmp_path))
    with pytest.raises(
        ConfigError, match="FLOPS_OAKESTRA_URL, FLOPS_OAKESTRA_USERNAME"
    ):
        bare.check(hierarchical(tmp_path), able())
    labelled = DeploymentSpec(
        job_id=JOB,
        workdir=tmp_path,
        repo_dir=tmp_path,
        learners=(LearnerSpec("learner-0", None, Placement.with_labels({"a": "b"})),),
    )
    with pytest.raises(Unsupported, match="by node labels: learner-0"):
        bare.check(labelled, able())
    loopback = OakestraOrchestrator(
        Settings(home=tmp_path),
        OakestraSettings(url="http://root:10000", username="u", password="p"),
    )
    with pytest.raises(
        ConfigError, match=r"cannot reach MLflow at http://127\.0\.0\.1"
    ):
        loopback.check(hierarchical(tmp_path), able())


def test_a_restarted_service_cleans_up_by_the_jobs_application_name(
    standin: OakestraStandin, tmp_path: Path
) -> None:
    orchestrator(standin, tmp_path).submit(hierarchical(tmp_path))
    orchestrator(standin, tmp_path).cleanup({"job_id": JOB})
    assert standin.apps == {} and standin.services == {}


def test_an_inference_server_is_an_application_of_its_own(
    standin: OakestraStandin, tmp_path: Path
) -> None:
    backend = orchestrator(standin, tmp_path)
    spec = ServerSpec(
        project_id=JOB,
        workdir=tmp_path,
        model_dir=tmp_path,
        environment=None,
        image=IMAGE + "-inference",
        host="0.0.0.0",
        port=18080,
    )
    handle = backend.start_server(spec)
    (service,) = standin.services.values()
    assert service["port"] == "18080:8080/tcp"
    assert service["cmd"] == [] and service["one_shot"] is False
    assert backend.server_status(handle).state is ComponentState.RUNNING
    standin.set_instance(handle["service_id"], logs="serving on :8080\n")
    assert backend.server_logs(handle) == "serving on :8080"
    backend.start_server(spec)  # again: the earlier one gives way
    assert len(standin.apps) == 1
    backend.stop_server(handle)
    assert standin.apps == {} and standin.services == {}

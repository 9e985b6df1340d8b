"""The kubernetes backend end to end through the real `kubernetes` client,
against a STAND-IN API server: kmock's KubernetesEmulator, with the API
server's and the kubelet's parts it lacks added as its reactions
(tests/kubernetes_standin.py). No kube-apiserver or kubelet can run here, so
the test plays the kubelet (pod phases patched through the API, logs) and a
Deployment's controller, and checks what the backend created, what it reports,
the calls it made (against deploy/kubernetes/rbac.yaml) and what it removes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flops.config import Resources
from flops.node_key import NodeKey
from flops_management.orchestrators import (
    ComponentState,
    ComponentStatus,
    DeploymentSpec,
    LearnerSpec,
    Placement,
    get_orchestrator,
)
from flops_management.orchestrators.base import ClusterSpec, ServerSpec
from flops_management.orchestrators.kubernetes import KubernetesOrchestrator
from flops_management.orchestrators.kubernetes_objects import (
    JOB_LABEL,
    MANAGED_BY,
    server_labels,
)
from flops_management.settings import Settings
from tests.kubernetes_standin import StandinAPIServer

NS = "flops-test"
JOB = "0123456789abcdef0123456789abcdef"
JOB_2 = "fedcba9876543210fedcba9876543210"
P = "flops-0123456789ab-"
RBAC = Path(__file__).parent.parent.parent / "deploy" / "kubernetes" / "rbac.yaml"


class Registrar:
    """Stands in for the SuperLink's Control API: records the keys it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path, list[tuple[str, bytes]]]] = []

    def __call__(
        self, address: str, ca_file: Path, keys: list[tuple[str, bytes]]
    ) -> dict[str, int]:
        self.calls.append((address, ca_file, keys))
        return {name: index + 1 for index, (name, _) in enumerate(keys)}


@pytest.fixture
def standin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StandinAPIServer]:
    server = StandinAPIServer().start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "standin", "cluster": {"server": server.url}}],
                "users": [{"name": "flops", "user": {"token": "standin-token"}}],
                "contexts": [
                    {
                        "name": "standin",
                        "context": {"cluster": "standin", "user": "flops"},
                    }
                ],
                "current-context": "standin",
            }
        )
    )
    monkeypatch.setenv("FLOPS_KUBERNETES_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("FLOPS_KUBERNETES_NAMESPACE", NS)
    monkeypatch.setenv("FLOPS_KUBERNETES_DATA_PVC", "flops-data")
    monkeypatch.setenv("FLOPS_KUBERNETES_READY_TIMEOUT", "20")
    yield server
    server.stop()


@pytest.fixture
def kubelet(standin: StandinAPIServer) -> Iterator[None]:
    stop = threading.Event()
    threading.Thread(target=_kubelet, args=(standin, stop), daemon=True).start()
    yield
    stop.set()


def _kubelet(server: StandinAPIServer, stop: threading.Event) -> None:
    """Starts each aggregator Pod, as a node would; learners the test drives."""
    while not stop.wait(0.05):
        for name in server.names("pods", NS):
            pod = server.get("pods", NS, name)
            if (
                name.endswith("-aggregator")
                and pod
                and pod["status"]["phase"] == "Pending"
            ):
                server.set_phase(NS, name, "Running")
                server.write_log(NS, name, "SuperLink listening on 0.0.0.0:8000")


def _backend(
    tmp_path: Path, registrar: Registrar, **settings: Any
) -> KubernetesOrchestrator:
    backend = get_orchestrator(
        "kubernetes", Settings(home=tmp_path / "home", **settings)
    )
    assert isinstance(backend, KubernetesOrchestrator)
    backend.registrar = registrar
    return backend


def _spec(tmp_path: Path, job: str) -> DeploymentSpec:
    return DeploymentSpec(
        job_id=job,
        workdir=tmp_path / job,
        repo_dir=tmp_path / job / "repo",
        learners=(
            LearnerSpec("learner-0", None, Placement.on_node("edge-a")),
            LearnerSpec("learner-1", None),
        ),
        resources=Resources(cpu=1, memory="256MiB"),
        image="reg/flops/t/p:tag",
        aggregator_env={"MLFLOW_TRACKING_PASSWORD": "job-secret"},
    )


def _granted() -> set[tuple[str, str]]:
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "Role")
    return {
        (verb, resource)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_kubernetes_backend_against_the_kmock_standin_api_server(
    standin: StandinAPIServer, kubelet: None, tmp_path: Path
) -> None:
    registrar = Registrar()
    backend = _backend(tmp_path, registrar)
    spec = _spec(tmp_path, JOB)
    deployment = backend.submit(spec)

    # What it created, each labelled with the job.
    assert standin.names("pods", NS) == [
        P + "aggregator",
        P + "learner-0",
        P + "learner-1",
    ]
    assert standin.names("services", NS) == [P + "aggregator"]
    assert standin.names("secrets", NS) == [
        P + "aggregator-env", P + "aggregator-tls", P + "ca",
        P + "learner-0-node-key", P + "learner-1-node-key",
    ]  # fmt: skip
    for (resource, _, _), obj in standin.objects.items():
        assert obj["metadata"]["labels"][MANAGED_BY] == "flops", resource
        assert obj["metadata"]["labels"][JOB_LABEL] == JOB, resource
        assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"]
    learner_0 = standin.get("pods", NS, P + "learner-0")
    assert learner_0 is not None
    assert learner_0["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "edge-a"}
    assert "nodeSelector" not in standin.objects[("pods", NS, P + "learner-1")]["spec"]
    (container,) = learner_0["spec"]["containers"]
    limits = {"cpu": "1000m", "memory": str(256 * 2**20)}
    assert container["resources"] == {"requests": limits, "limits": limits}
    assert {
        v["name"]: v["secret"]["defaultMode"]
        for v in learner_0["spec"]["volumes"]
        if "secret" in v
    } == {"tls": 0o400, "node-key": 0o400}
    assert container["args"][2] == P + "aggregator:8000"

    # Node keys: made here, registered through the Control API (the seam), the
    # private half a Secret for its learner alone.
    ((address, ca_file, keys),) = registrar.calls
    assert address == f"{P}aggregator.{NS}.svc:8000" == deployment.control_address
    assert ca_file == deployment.root_certificates
    assert [name for name, _ in keys] == ["learner-0", "learner-1"]
    for name, pem in keys:
        key = NodeKey(spec.workdir / "keys" / name / "node.key")
        assert pem == key.public_pem()
        stored = standin.objects[("secrets", NS, f"{P}{name}-node-key")]["data"]
        assert base64.b64decode(stored["node.key"]) == key.private_path.read_bytes()
    assert deployment.nodes == {"learner-0": 1, "learner-1": 2}
    ca = standin.objects[("secrets", NS, P + "ca")]["data"]
    assert set(ca) == {"ca.crt"}  # learners never see the SuperLink's key
    assert base64.b64decode(ca["ca.crt"]) == ca_file.read_bytes()

    # The call sequence: the aggregator's objects, its Pod seen running, then
    # the learners' keys and Pods.
    # (polling the aggregator Pod counted once).
    calls = [request[:2] for request in standin.requests]
    polls = [
        i for i, c in enumerate(calls) if i and c == calls[i - 1] == ("get", "pods")
    ]
    assert [c for i, c in enumerate(calls) if i not in polls] == [
        ("create", "secrets"),  # the aggregator's credential, TLS, the CA
        ("create", "secrets"),
        ("create", "secrets"),
        ("create", "pods"),  # the aggregator
        ("create", "services"),  # its Fleet Service
        ("get", "pods"),  # until it runs
        ("create", "secrets"),  # each learner's node key, then registered
        ("create", "secrets"),
        ("create", "pods"),  # the learners
        ("create", "pods"),
    ]

    # Pod phases as component states.
    states = deployment.status()
    assert states["aggregator"] == ComponentStatus.running()
    assert states["learner-0"].state is ComponentState.PENDING
    for learner in ("learner-0", "learner-1"):
        standin.set_phase(NS, P + learner, "Running")
        standin.write_log(NS, P + learner, f"{learner} joined", "round 1")
    assert all(s == ComponentStatus.running() for s in deployment.status().values())

    # Logs per component, each line once.
    lines = [(line.component, line.text) for line in deployment.logs()]
    assert ("aggregator", "SuperLink listening on 0.0.0.0:8000") in lines
    assert [t for c, t in lines if c == "learner-0"] == ["learner-0 joined", "round 1"]
    assert list(deployment.logs()) == []
    standin.write_log(NS, P + "learner-1", "round 2")
    assert [(x.component, x.text) for x in deployment.logs()] == [
        ("learner-1", "round 2")
    ]
    assert deployment.tail("learner-0", 1) == "round 1\n"

    standin.set_phase(NS, P + "learner-0", "Succeeded", 0)
    standin.set_phase(NS, P + "learner-1", "Failed", 2)
    states = deployment.status()
    assert states["learner-0"] == ComponentStatus.exited(0)
    assert states["learner-1"] == ComponentStatus.exited(2)
    assert sorted(deployment.exited()) == ["learner-0", "learner-1"]
    deployment.stop_learner("learner-1")
    assert deployment.status()["learner-1"].state is ComponentState.REMOVED

    # Cancel removes everything labelled with the job; twice is safe.
    info = json.loads(json.dumps(deployment.runtime_info()))
    deployment.cancel()
    assert standin.objects == {}
    assert deployment.wait(timeout=5)
    deployment.cancel()

    # A restarted service cleans a dead one's leftovers up by the job's label.
    leftover = backend.submit(_spec(tmp_path, JOB_2)).runtime_info()
    backend.cleanup(info)  # job 1: nothing left, nothing fails
    assert len(standin.names("pods", NS)) == 3
    restarted = _backend(tmp_path, Registrar())
    restarted.cleanup(json.loads(json.dumps(leftover)))
    assert standin.objects == {}

    # Inference server: a Deployment and its Service, labelled with the project.
    project = "f" * 32
    server = ServerSpec(project, tmp_path, tmp_path, None, "reg/inf:1", "0.0.0.0", 8080)
    handle = restarted.start_server(server)
    assert standin.names("deployments", NS) == ["flops-ffffffffffff-inference"]
    assert standin.names("services", NS) == ["flops-ffffffffffff-inference"]
    assert restarted.server_status(handle).state is ComponentState.PENDING
    standin.add_pod(NS, "flops-inference-abc", server_labels(project), "reg/inf:1")
    standin.set_phase(NS, "flops-inference-abc", "Running")
    standin.write_log(NS, "flops-inference-abc", "serving on :8080")
    assert restarted.server_status(handle) == ComponentStatus.running()
    assert restarted.server_logs(handle) == "serving on :8080\n"
    restarted.stop_server(handle)
    assert restarted.server_status(handle).state is ComponentState.REMOVED
    restarted.stop_server(handle)  # safe when it is gone

    # Every call made is one the Role grants, and the Role grants no other.
    assert {r[:2] for r in standin.requests} == _granted()


def test_kubernetes_standin_plaintext_registers_no_keys(
    standin: StandinAPIServer, kubelet: None, tmp_path: Path
) -> None:
    registrar = Registrar()
    backend = _backend(tmp_path, registrar, dev_insecure_flower=True)
    deployment = backend.submit(_spec(tmp_path, JOB))
    assert registrar.calls == [] and deployment.nodes == {}
    assert standin.names("secrets", NS) == [P + "aggregator-env"]
    pod = standin.get("pods", NS, P + "learner-0")
    assert pod is not None
    assert "--dev-insecure-flower" in pod["spec"]["containers"][0]["args"]
    deployment.cancel()
    assert standin.objects == {}


def test_kubernetes_standin_aggregator_that_fails_to_start_leaves_nothing(
    standin: StandinAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _backend(tmp_path, Registrar())
    real_create = backend.api.create

    def create(manifest: dict[str, Any]) -> Any:
        created = real_create(manifest)
        if manifest["kind"] == "Pod" and manifest["metadata"]["name"].endswith(
            "aggregator"
        ):
            standin.set_phase(NS, manifest["metadata"]["name"], "Failed", 1)
        return created

    monkeypatch.setattr(backend.api, "create", create)
    with pytest.raises(Exception, match="did not run"):
        backend.submit(_spec(tmp_path, JOB))
    assert standin.objects == {}


def test_hierarchical_clusters_against_the_kmock_standin_api_server(
    standin: StandinAPIServer, kubelet: None, tmp_path: Path
) -> None:
    """Each cluster: a Pod and a Service; its uplink's key registered at the
    root's SuperLink, its learners' at its own; its learners dial its Service."""
    registrar = Registrar()
    backend = _backend(tmp_path, registrar)
    spec = dataclasses.replace(
        _spec(tmp_path, JOB),
        learners=(
            LearnerSpec("learner-0", None, Placement.on_node("edge-a"), "edge-a"),
            LearnerSpec("learner-1", None, cluster="edge-b"),
        ),
        clusters=(
            ClusterSpec("edge-a", Placement.on_node("edge-a")),
            ClusterSpec("edge-b"),
        ),
    )
    deployment = backend.submit(spec)
    assert standin.names("pods", NS) == [
        P + "aggregator",
        P + "edge-a-aggregator",
        P + "edge-b-aggregator",
        P + "learner-0",
        P + "learner-1",
    ]
    assert standin.names("services", NS) == [
        P + "aggregator",
        P + "edge-a-aggregator",
        P + "edge-b-aggregator",
    ]
    cluster_a = standin.objects[("pods", NS, P + "edge-a-aggregator")]
    assert cluster_a["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "edge-a"}
    assert cluster_a["spec"]["containers"][0]["args"][:5] == [
        "cluster", "--name", "edge-a", "--superlink", P + "aggregator:8000",
    ]  # fmt: skip
    learner_1 = standin.objects[("pods", NS, P + "learner-1")]
    assert learner_1["spec"]["containers"][0]["args"][2] == P + "edge-b-aggregator:8000"
    assert [
        (address, [n for n, _ in keys]) for address, _, keys in registrar.calls
    ] == [
        (f"{P}aggregator.{NS}.svc:8000", ["edge-a-uplink", "edge-b-uplink"]),
        (f"{P}edge-a-aggregator.{NS}.svc:8000", ["learner-0"]),
        (f"{P}edge-b-aggregator.{NS}.svc:8000", ["learner-1"]),
    ]
    assert sorted(deployment.clusters) == ["edge-a", "edge-b"]
    assert deployment.clusters["edge-b"].control_address == (
        f"{P}edge-b-aggregator.{NS}.svc:8000"
    )
    components = {c.name: c.cluster for c in deployment.components()}
    assert components["edge-a-aggregator"] == "edge-a"
    assert components["learner-1"] == "edge-b"
    deployment.cancel()
    assert standin.objects == {}
    # The same calls as a classic job, nothing the Role does not grant.
    assert {r[:2] for r in standin.requests} <= _granted()

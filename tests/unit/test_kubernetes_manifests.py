"""The kubernetes backend's objects against golden files, each validated
against the Kubernetes schemas FLOps targets, and the RBAC Role against the
calls the backend makes (management/orchestrators/kubernetes_manifests.py).

FLOPS_UPDATE_GOLDEN=1 rewrites the golden files from the builders (then read
the diff as a reviewer would).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from flops.config import Resources
from flops.errors import ConfigError
from flops_management.orchestrators import get_orchestrator
from flops_management.orchestrators import kubernetes_clusters as c
from flops_management.orchestrators import kubernetes_manifests as m
from flops_management.orchestrators import kubernetes_objects as o
from flops_management.orchestrators.base import (
    ClusterSpec,
    DeploymentSpec,
    LearnerSpec,
)
from flops_management.orchestrators.kubernetes_api import CALLS, pod_status
from flops_management.orchestrators.kubernetes_validation import (
    ManifestError,
    validate,
)
from flops_management.orchestrators.topology import (
    Capability,
    ComponentState,
    ComponentStatus,
    Placement,
    StoredPartitions,
)
from flops_management.sandbox import Identity
from flops_management.settings import Settings

GOLDEN = Path(__file__).parent.parent / "golden" / "kubernetes"
RBAC = Path(__file__).parent.parent.parent / "deploy" / "kubernetes" / "rbac.yaml"
JOB = "0123456789abcdef0123456789abcdef"
KS = o.KubernetesSettings(namespace="flops-jobs", data_pvc="flops-data")
CLUSTER = ClusterSpec("edge-b", Placement.with_labels({"site": "b"}))


def _spec() -> DeploymentSpec:
    return DeploymentSpec(
        job_id=JOB,
        workdir=Path("/w"),
        repo_dir=Path("/w/repo"),
        learners=(
            LearnerSpec(
                "learner-0",
                StoredPartitions("t", ("digits",), 0),
                Placement.on_node("edge-a"),
            ),
            LearnerSpec("learner-1", None, Placement.with_labels({"zone": "b"})),
        ),
        resources=Resources(cpu=1.5, memory="512MiB"),
        image="reg/flops/t/p:tag",
        identity=Identity(2000003, 2000003),
        aggregator_env={"MLFLOW_TRACKING_PASSWORD": "job-secret"},
    )


def _manifests() -> dict[str, dict[str, Any]]:
    spec = _spec()
    learner_0, learner_1 = spec.learners
    hostpath = o.KubernetesSettings(namespace="flops-jobs", data_host_path="/srv/d")
    tls = {
        name: f"<{name}>".encode()
        for name in ("ca.crt", "superlink.crt", "superlink.key")
    }
    env_secret, superlink_secret, ca_secret = m.aggregator_secrets(
        JOB, KS, spec.aggregator_env, tls
    )
    return {
        "aggregator-env-secret": env_secret,
        "superlink-tls-secret": superlink_secret,
        "ca-secret": ca_secret,
        "aggregator-pod": m.aggregator_pod(spec, KS, True, o.env_secret(JOB)),
        "aggregator-service": m.aggregator_service(JOB, KS),
        "learner-pod-on-node": m.learner_pod(spec, learner_0, 0, KS, True),
        "learner-pod-by-labels": m.learner_pod(spec, learner_1, 1, hostpath, True),
        "node-key-secret": o.secret(
            o.node_key_secret(JOB, "learner-0"),
            KS.namespace,
            o.labels(JOB, "learner", "learner-0"),
            {"node.key": b"-----BEGIN OPENSSH PRIVATE KEY-----\n"},
        ),
        "server-deployment": m.server_deployment("f" * 32, "reg/inf:1", None, KS),
        "server-service": m.server_service("f" * 32, 8080, KS),
        # Hierarchical mode: a cluster's Pod (placed by labels), its Service,
        # and a learner of it dialling that Service.
        "cluster-pod": c.cluster_pod(spec, CLUSTER, KS, True, o.env_secret(JOB)),
        "cluster-service": c.cluster_service(JOB, CLUSTER.name, KS),
        "cluster-learner-pod": m.learner_pod(
            spec, learner_1, 1, KS, True, c.cluster_link(JOB, CLUSTER.name)
        ),
    }


@pytest.mark.parametrize("name", sorted(_manifests()))
def test_each_manifest_equals_its_golden_file_and_validates(name: str) -> None:
    manifest = _manifests()[name]
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("FLOPS_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert manifest == yaml.safe_load(golden.read_text())
    validate(manifest, o.TARGET_VERSION)


def test_a_learner_is_pinned_limited_and_unprivileged() -> None:
    pod = _manifests()["learner-pod-on-node"]
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "edge-a"}
    assert _manifests()["learner-pod-by-labels"]["spec"]["nodeSelector"] == {
        "zone": "b"
    }
    (container,) = spec["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "1500m", "memory": str(512 * 2**20)},
        "limits": {"cpu": "1500m", "memory": str(512 * 2**20)},
    }
    assert spec["securityContext"]["runAsUser"] == 2000003
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is False
    modes = {
        v["name"]: v["secret"]["defaultMode"] for v in spec["volumes"] if "secret" in v
    }
    assert modes == {"tls": 0o400, "node-key": 0o400}
    # Its own key, the CA alone, no other learner's.
    secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secrets == {"flops-0123456789ab-ca", "flops-0123456789ab-learner-0-node-key"}
    assert "ports" not in container  # learners only dial out
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "flops",
        "flops.io/job": JOB,
        "flops.io/role": "learner",
        "flops.io/learner": "learner-0",
    }


def test_the_aggregators_credential_stays_out_of_its_pod_spec() -> None:
    pod = _manifests()["aggregator-pod"]
    assert "job-secret" not in yaml.safe_dump(pod)
    (container,) = pod["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": o.env_secret(JOB)}}]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_a_wrong_field_names_the_object_and_the_field() -> None:
    bad = m.aggregator_service(JOB, KS)
    bad["spec"]["ports"][0]["port"] = "eight thousand"
    with pytest.raises(ManifestError, match=r"Service/flops-0123456789ab-aggregator"):
        validate(bad)


def test_the_rbac_file_validates_and_grants_exactly_the_calls_made() -> None:
    documents = list(yaml.safe_load_all(RBAC.read_text()))
    for document in documents:
        validate(document, o.TARGET_VERSION)
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}
    assert kinds["RoleBinding"]["subjects"][0]["name"] == "flops-management"
    granted = {
        (verb, resource)
        for rule in kinds["Role"]["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == set(CALLS)


def test_pod_phases_map_to_component_states() -> None:
    from kubernetes.client import (  # type: ignore[import-untyped]
        V1ContainerState,
        V1ContainerStateTerminated,
        V1ContainerStatus,
        V1Pod,
        V1PodStatus,
    )

    def pod(phase: str, code: int | None = None) -> Any:
        statuses = None
        if code is not None:
            state = V1ContainerState(
                terminated=V1ContainerStateTerminated(exit_code=code)
            )
            statuses = [
                V1ContainerStatus(
                    name="c", image="i", image_id="", ready=False, restart_count=0,
                    state=state,
                )
            ]  # fmt: skip
        return V1Pod(status=V1PodStatus(phase=phase, container_statuses=statuses))

    assert pod_status(pod("Pending")).state is ComponentState.PENDING
    assert pod_status(pod("Running")) == ComponentStatus.running()
    assert pod_status(pod("Succeeded", 0)) == ComponentStatus.exited(0)
    assert pod_status(pod("Failed", 3)) == ComponentStatus.exited(3)
    assert pod_status(None).state is ComponentState.REMOVED


def test_the_backend_is_registered_and_refuses_stored_data_without_a_volume(
    tmp_path: Path,
) -> None:
    backend = get_orchestrator("kubernetes", Settings(home=tmp_path))
    assert backend.needs_image
    assert Capability.PLACE_ON_NODE in backend.capabilities
    assert Capability.JOINED_LEARNERS not in backend.capabilities
    backend.kube = o.KubernetesSettings()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="learner-0"):
        backend.submit(_spec())


def test_learners_that_join_by_themselves_are_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from flops_management.orchestrators import Unsupported, able

    backend = get_orchestrator("kubernetes", Settings(home=tmp_path))
    joined = LearnerSpec("learner-9", None, Placement.joined())
    spec = replace(_spec(), learners=(*_spec().learners, joined))
    with pytest.raises(Unsupported, match=r"learner-9 \(joined\)"):
        backend.check(spec, able())


def test_log_lines_are_returned_once_even_with_equal_timestamps() -> None:
    from flops_management.orchestrators.kubernetes_deployment import (
        KubernetesDeployment,
        stamp_key,
    )

    assert stamp_key("2026-01-01T00:00:00.5Z") > stamp_key("2026-01-01T00:00:00.49Z")

    class Log:
        namespace = "ns"

        def __init__(self) -> None:
            self.rows: list[str] = []

        def pod_log(self, pod: str, **_: Any) -> str:
            return "".join(f"{row}\n" for row in self.rows) if "agg" in pod else ""

    api = Log()
    deployment = KubernetesDeployment(api, _spec(), "c:8000")  # type: ignore[arg-type]
    api.rows = ["2026-01-01T00:00:00.1Z a", "2026-01-01T00:00:00.1Z b"]
    assert [line.text for line in deployment.logs()] == ["a", "b"]
    api.rows += ["2026-01-01T00:00:00.1Z c", "2026-01-01T00:00:01Z d"]
    assert [line.text for line in deployment.logs()] == ["c", "d"]
    assert list(deployment.logs()) == []


def test_the_superlinks_certificate_names_its_service_and_loopback() -> None:
    ks = o.KubernetesSettings(control_host="flops.example.org:31000")
    service = "flops-0123456789ab-aggregator"
    assert m.superlink_hosts(JOB, "jobs", ks) == [
        service,
        f"{service}.jobs",
        f"{service}.jobs.svc",
        f"{service}.jobs.svc.cluster.local",
        "127.0.0.1",  # the aggregator's executor, in its Pod
        "localhost",
        "flops.example.org",
    ]
    assert m.control_address(JOB, "jobs") == f"{service}.jobs.svc:8000"

"""The `kubernetes` orchestrator's objects, built by pure functions.

Every object a job (or an inference server) needs is a plain dict here, so it is
golden-tested by equality and validated against the schemas of the Kubernetes
version FLOps targets (`kubernetes_validation`); `kubernetes.py` only sends
them. Everything carries `app.kubernetes.io/managed-by: flops` and its job (or
project), which is how a job's teardown and a restarted service find it.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from flops.actor_commands import CA_FILE
from flops_management.orchestrators.base import (
    AGGREGATOR,
    DeploymentSpec,
    LearnerSpec,
    placed_learners,
)
from flops_management.orchestrators.docker_containers import (
    BASE_ENVIRONMENT,
    LEARNER_DATA,
    NODE_KEY_DIR,
    SERVER_PORT,
    SUPERLINK_PORT,
    TLS_DIR,
    learner_threads,
)
from flops_management.orchestrators.local_commands import THREAD_VARIABLES
from flops_management.orchestrators.node_auth import NODE_KEY_FILE
from flops_management.sandbox import Identity

# The schemas the manifests are validated against (kubernetes-validate ships them).
TARGET_VERSION = "1.33"
MANAGED_BY = "app.kubernetes.io/managed-by"
JOB_LABEL = "flops.io/job"
ROLE_LABEL = "flops.io/role"
LEARNER_LABEL = "flops.io/learner"
# Inference servers carry their project, not a job: a job's teardown must leave
# them running.
SERVER_LABEL = "flops.io/inference-server"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# Secret files: the owner's to read; `fsGroup` gives them to the tenant's group.
SECRET_MODE = 0o400
INFERENCE = "inference"


class KubernetesSettings(BaseSettings):
    """FLOPS_KUBERNETES_*: where and how the backend places a job's objects."""

    model_config = SettingsConfigDict(
        env_prefix="FLOPS_KUBERNETES_", extra="ignore", frozen=True
    )

    namespace: str = "default"
    # None: the in-cluster config when in a pod, else ~/.kube/config.
    kubeconfig: Path | None = None
    context: str | None = None
    # How the SuperLink's Service is exposed; anything but ClusterIP also exposes
    # its Control API, which has no authentication of its own.
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    # host:port the service dials for the Control API (`flwr run`, node keys);
    # None: the Service's cluster DNS name (the service runs in the cluster).
    control_host: str | None = None
    # Learner data: one folder per learner name in this PVC or host path.
    data_pvc: str | None = None
    data_host_path: str | None = None
    # Who actors run as when the job names no tenant identity (never root).
    run_as_user: int = 10001
    image_pull_secret: str | None = None
    ready_timeout: float = 300.0


def object_name(owner_id: str, component: str) -> str:
    """A DNS-1123 label (Service names are the strictest: 63 characters)."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"flops-{owner_id[:12]}-{component}".lower())
    return name[:63].strip("-")


def superlink_secret(job_id: str) -> str:
    """ca.crt, superlink.crt and superlink.key: the aggregator's alone."""
    return object_name(job_id, AGGREGATOR) + "-tls"


def ca_secret(job_id: str) -> str:
    """ca.crt alone: what learners check the SuperLink against."""
    return object_name(job_id, "ca")


def node_key_secret(job_id: str, learner: str) -> str:
    return object_name(job_id, learner) + "-node-key"


def env_secret(job_id: str) -> str:
    """The aggregator's own variables (its MLflow credential)."""
    return object_name(job_id, AGGREGATOR) + "-env"


def labels(job_id: str, role: str, learner: str | None = None) -> dict[str, str]:
    found = {MANAGED_BY: "flops", JOB_LABEL: job_id, ROLE_LABEL: role}
    if learner is not None:
        found[LEARNER_LABEL] = re.sub(r"[^A-Za-z0-9_.-]+", "-", learner)[:63]
    return found


def job_selector(job_id: str) -> str:
    return f"{MANAGED_BY}=flops,{JOB_LABEL}={job_id}"


def _meta(name: str, namespace: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(tags)}


def secret(
    name: str, namespace: str, tags: dict[str, str], files: dict[str, bytes]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace, tags),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(files.items())},
    }


def aggregator_secrets(
    job_id: str,
    ks: KubernetesSettings,
    env: dict[str, str],
    tls_files: dict[str, bytes] | None,
) -> list[dict[str, Any]]:
    """The aggregator's variables (`env`, its MLflow credential), the
    SuperLink's TLS folder (`tls_files`: ca.crt, superlink.crt, superlink.key)
    and the CA's certificate alone, for learners; None: plaintext."""
    tags = labels(job_id, AGGREGATOR)
    found = []
    if env:
        values = {k: v.encode() for k, v in env.items()}
        found.append(secret(env_secret(job_id), ks.namespace, tags, values))
    if tls_files is not None:
        found.append(secret(superlink_secret(job_id), ks.namespace, tags, tls_files))
        ca = {CA_FILE: tls_files[CA_FILE]}
        found.append(secret(ca_secret(job_id), ks.namespace, tags, ca))
    return found


def security(identity: Identity | None, ks: KubernetesSettings) -> dict[str, Any]:
    """The pod's: the tenant's ids (never root); `fsGroup` lets its group read
    the Secrets' files."""
    uid, gid = (identity.uid, identity.gid) if identity else (ks.run_as_user,) * 2
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _env(variables: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(variables.items())]


def _secret_volume(name: str, secret_name: str) -> dict[str, Any]:
    return {
        "name": name,
        "secret": {"secretName": secret_name, "defaultMode": SECRET_MODE},
    }


def _mount(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": True}


def _pod_spec(
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    identity: Identity | None,
    ks: KubernetesSettings,
    restart: str,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        # Tenant code gets no credential for the API server.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": security(identity, ks),
        "containers": [{**container, "securityContext": CONTAINER_SECURITY}],
        "volumes": volumes,
    }
    if ks.image_pull_secret:
        spec["imagePullSecrets"] = [{"name": ks.image_pull_secret}]
    return spec


def _tls_args(tls: bool) -> list[str]:
    return ["--tls-dir", TLS_DIR] if tls else ["--dev-insecure-flower"]


def superlink_hosts(job_id: str, namespace: str, ks: KubernetesSettings) -> list[str]:
    """What the SuperLink's certificate names: its Service, as learners and the
    service dial it; loopback, where its own executor dials it in the Pod; and
    the Control address set in settings."""
    service = object_name(job_id, AGGREGATOR)
    hosts = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    hosts += [f"{service}.{namespace}.svc.cluster.local", "127.0.0.1", "localhost"]
    if ks.control_host:
        hosts.append(ks.control_host.rpartition(":")[0] or ks.control_host)
    return hosts


def control_address(job_id: str, namespace: str) -> str:
    """The SuperLink's Service as the service dials it from inside the cluster."""
    return f"{object_name(job_id, AGGREGATOR)}.{namespace}.svc:{SUPERLINK_PORT}"


def aggregator_pod(
    spec: DeploymentSpec, ks: KubernetesSettings, tls: bool, env_secret: str | None
) -> dict[str, Any]:
    """A bare Pod (restartPolicy Never), not a Deployment: a SuperLink restarted
    would have lost its registered nodes and its run, so the job fails instead,
    as it does on every other backend."""
    name = object_name(spec.job_id, AGGREGATOR)
    command = ["aggregator", "--host", "0.0.0.0", "--port", str(SUPERLINK_PORT)]  # noqa: S104 - the pod's own network
    command += ["--poll-interval", str(spec.poll_interval), *_tls_args(tls)]
    if spec.flower_app:
        command += ["--flower-app", spec.flower_app[0]]
    container: dict[str, Any] = {
        "name": AGGREGATOR,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": command,
        "env": _env({**BASE_ENVIRONMENT, **spec.env}),
        "ports": [{"name": "fleet", "containerPort": SUPERLINK_PORT}],
        "volumeMounts": [_mount("tls", TLS_DIR)] if tls else [],
    }
    if env_secret is not None:  # its MLflow credential: not in the pod's spec
        container["envFrom"] = [{"secretRef": {"name": env_secret}}]
    volumes = [_secret_volume("tls", superlink_secret(spec.job_id))] if tls else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, ks.namespace, labels(spec.job_id, AGGREGATOR)),
        "spec": _pod_spec(container, volumes, spec.identity, ks, "Never"),
    }


def aggregator_service(job_id: str, ks: KubernetesSettings) -> dict[str, Any]:
    name = object_name(job_id, AGGREGATOR)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, ks.namespace, labels(job_id, AGGREGATOR)),
        "spec": {
            "type": ks.service_type,
            "selector": labels(job_id, AGGREGATOR),
            "ports": [
                {
                    "name": "fleet",
                    "port": SUPERLINK_PORT,
                    "targetPort": "fleet",
                    "protocol": "TCP",
                }
            ],
        },
    }


def resources(spec: DeploymentSpec) -> dict[str, Any]:
    """Requests equal to limits: the config's figures are what a learner gets
    (the Guaranteed QoS class), never more, never less."""
    amounts: dict[str, str] = {}
    if spec.resources.cpu is not None:
        amounts["cpu"] = f"{round(spec.resources.cpu * 1000)}m"
    memory = spec.resources.memory_bytes()
    if memory is not None:
        amounts["memory"] = str(memory)
    return {"requests": amounts, "limits": dict(amounts)} if amounts else {}


def node_selector(learner: LearnerSpec) -> dict[str, str]:
    if learner.placement.node is not None:
        return {HOSTNAME_LABEL: learner.placement.node}
    return dict(learner.placement.labels)


def data_volume(learner: LearnerSpec, ks: KubernetesSettings) -> dict[str, Any] | None:
    if ks.data_pvc:
        claim = {"claimName": ks.data_pvc, "readOnly": True}
        return {"name": "data", "persistentVolumeClaim": claim}
    if ks.data_host_path:
        path = f"{ks.data_host_path.rstrip('/')}/{learner.name}"
        return {"name": "data", "hostPath": {"path": path, "type": "Directory"}}
    return None


def learner_pod(
    spec: DeploymentSpec,
    learner: LearnerSpec,
    index: int,
    ks: KubernetesSettings,
    tls: bool,
) -> dict[str, Any]:
    """`index`: its partition; `tls`: it reads the CA's Secret at /tls and its
    node key's at /node-key (False: plaintext, a dev switch)."""
    name = object_name(spec.job_id, learner.name)
    superlink = f"{object_name(spec.job_id, AGGREGATOR)}:{SUPERLINK_PORT}"
    command = ["learner", "--superlink", superlink, "--name", learner.name]
    command += ["--data-dir", LEARNER_DATA, "--poll-interval", str(spec.poll_interval)]
    command += ["--partition-id", str(index)]
    command += ["--num-partitions", str(len(spec.learners)), *_tls_args(tls)]
    if tls:
        command += ["--node-key", f"{NODE_KEY_DIR}/{NODE_KEY_FILE}"]
    if spec.flower_app:
        command += ["--flower-app", spec.flower_app[1]]
    threads = str(learner_threads(spec.resources, len(placed_learners(spec.learners))))
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    data = data_volume(learner, ks)
    if data is not None:
        mounts.append(_mount("data", LEARNER_DATA))
        if "persistentVolumeClaim" in data:  # its own folder of the claim
            mounts[-1]["subPath"] = learner.name
        volumes.append(data)
    if tls:
        mounts += [_mount("tls", TLS_DIR), _mount("node-key", NODE_KEY_DIR)]
        volumes.append(_secret_volume("tls", ca_secret(spec.job_id)))
        volumes.append(
            _secret_volume("node-key", node_key_secret(spec.job_id, learner.name))
        )
    container = {
        "name": "learner",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": command,
        "env": _env(
            {**BASE_ENVIRONMENT, **spec.env, **dict.fromkeys(THREAD_VARIABLES, threads)}
        ),
        "resources": resources(spec),
        "volumeMounts": mounts,
    }
    pod_spec = _pod_spec(container, volumes, spec.identity, ks, "Never")
    selector = node_selector(learner)
    if selector:
        pod_spec["nodeSelector"] = selector
    tags = labels(spec.job_id, "learner", learner.name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, ks.namespace, tags),
        "spec": pod_spec,
    }


def server_labels(project_id: str) -> dict[str, str]:
    return {MANAGED_BY: "flops", SERVER_LABEL: project_id, ROLE_LABEL: INFERENCE}


def server_deployment(
    project_id: str, image: str, identity: Identity | None, ks: KubernetesSettings
) -> dict[str, Any]:
    """The inference server outlives its job: a Deployment restarts it."""
    name = object_name(project_id, INFERENCE)
    tags = server_labels(project_id)
    container = {
        "name": INFERENCE,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(BASE_ENVIRONMENT),
        "ports": [{"name": "http", "containerPort": SERVER_PORT}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, ks.namespace, tags),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(tags)},
            "template": {
                "metadata": {"labels": dict(tags)},
                "spec": _pod_spec(container, [], identity, ks, "Always"),
            },
        },
    }


def server_service(
    project_id: str, port: int, ks: KubernetesSettings
) -> dict[str, Any]:
    tags = server_labels(project_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(object_name(project_id, INFERENCE), ks.namespace, tags),
        "spec": {
            "type": ks.service_type,
            "selector": dict(tags),
            "ports": [
                {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }

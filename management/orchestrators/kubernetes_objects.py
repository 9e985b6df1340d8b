"""What every FLOps object on Kubernetes shares: its settings, names, labels
and the parts of a pod (security, Secret volumes), built by pure functions.

Everything carries `app.kubernetes.io/managed-by: flops` and its job (or
project), which is how a job's teardown and a restarted service find it. The
objects themselves are built in `kubernetes_manifests`.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from flops_management.orchestrators.base import AGGREGATOR
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
        env_prefix="FLOPS_KUBERNETES_",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
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


def server_labels(project_id: str) -> dict[str, str]:
    return {MANAGED_BY: "flops", SERVER_LABEL: project_id, ROLE_LABEL: INFERENCE}


def meta(name: str, namespace: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(tags)}


def secret(
    name: str, namespace: str, tags: dict[str, str], files: dict[str, bytes]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(name, namespace, tags),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(files.items())},
    }


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


def env_vars(variables: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(variables.items())]


def secret_volume(name: str, secret_name: str) -> dict[str, Any]:
    return {
        "name": name,
        "secret": {"secretName": secret_name, "defaultMode": SECRET_MODE},
    }


def mount(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": True}


def pod_spec(
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

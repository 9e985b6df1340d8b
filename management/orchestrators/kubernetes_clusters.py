"""The `kubernetes` orchestrator's objects for hierarchical mode, by pure functions.

Each cluster is a Pod of the FL-actor image (`flops.actor cluster`: its
SuperLink, the executor of its ServerApp and its uplink, a SuperNode of the
root's SuperLink) behind a Service of its own, which its learners dial. The Pod
goes where the cluster's placement says, as its learners do; it mounts the
SuperLink's TLS Secret (every SuperLink of the job serves the job's
certificate, which names each cluster's Service), its uplink's node key, and
the aggregator's variables (its MLflow credential: the cluster logs its run).
"""

from __future__ import annotations

from typing import Any

from flops_management.orchestrators.base import (
    AGGREGATOR,
    UPLINK,
    ClusterSpec,
    DeploymentSpec,
    cluster_part,
)
from flops_management.orchestrators.docker_containers import (
    BASE_ENVIRONMENT,
    NODE_KEY_DIR,
    SUPERLINK_PORT,
    TLS_DIR,
)
from flops_management.orchestrators.kubernetes_objects import (
    HOSTNAME_LABEL,
    KubernetesSettings,
    env_vars,
    labels,
    meta,
    mount,
    node_key_secret,
    object_name,
    pod_spec,
    secret_volume,
    superlink_secret,
)
from flops_management.orchestrators.node_auth import NODE_KEY_FILE


def cluster_service_name(job_id: str, cluster: str) -> str:
    return object_name(job_id, cluster_part(cluster, AGGREGATOR))


def cluster_hosts(
    job_id: str, namespace: str, clusters: tuple[ClusterSpec, ...]
) -> list[str]:
    """The names the clusters' Services are dialled at, for the certificate."""
    hosts = []
    for cluster in clusters:
        service = cluster_service_name(job_id, cluster.name)
        hosts += [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
        hosts.append(f"{service}.{namespace}.svc.cluster.local")
    return hosts


def cluster_link(job_id: str, cluster: str) -> str:
    """Where the cluster's learners dial its SuperLink (its Service)."""
    return f"{cluster_service_name(job_id, cluster)}:{SUPERLINK_PORT}"


def cluster_control(job_id: str, cluster: str, namespace: str) -> str:
    """The cluster's Control API as the service dials it inside the cluster."""
    return f"{cluster_service_name(job_id, cluster)}.{namespace}.svc:{SUPERLINK_PORT}"


def placement_selector(cluster: ClusterSpec) -> dict[str, str]:
    if cluster.placement.node is not None:
        return {HOSTNAME_LABEL: cluster.placement.node}
    return dict(cluster.placement.labels)


def cluster_pod(
    spec: DeploymentSpec,
    cluster: ClusterSpec,
    ks: KubernetesSettings,
    tls: bool,
    env_secret: str | None,
) -> dict[str, Any]:
    """A bare Pod (restartPolicy Never), as the root's: a cluster restarted
    would have lost its learners' registrations and its run."""
    part = cluster_part(cluster.name, AGGREGATOR)
    root = f"{object_name(spec.job_id, AGGREGATOR)}:{SUPERLINK_PORT}"
    command = ["cluster", "--name", cluster.name, "--superlink", root]
    command += ["--host", "0.0.0.0", "--port", str(SUPERLINK_PORT)]  # noqa: S104 - the pod's own network
    command += ["--poll-interval", str(spec.poll_interval)]
    if tls:
        command += [
            "--tls-dir",
            TLS_DIR,
            "--node-key",
            f"{NODE_KEY_DIR}/{NODE_KEY_FILE}",
        ]
    else:
        command.append("--dev-insecure-flower")
    container: dict[str, Any] = {
        "name": AGGREGATOR,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": command,
        "env": env_vars({**BASE_ENVIRONMENT, **spec.env}),
        "ports": [{"name": "fleet", "containerPort": SUPERLINK_PORT}],
        "volumeMounts": (
            [mount("tls", TLS_DIR), mount("node-key", NODE_KEY_DIR)] if tls else []
        ),
    }
    if env_secret is not None:
        container["envFrom"] = [{"secretRef": {"name": env_secret}}]
    volumes = []
    if tls:
        uplink = cluster_part(cluster.name, UPLINK)
        volumes = [
            secret_volume("tls", superlink_secret(spec.job_id)),
            secret_volume("node-key", node_key_secret(spec.job_id, uplink)),
        ]
    pod = pod_spec(container, volumes, spec.identity, ks, "Never")
    selector = placement_selector(cluster)
    if selector:
        pod["nodeSelector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(
            object_name(spec.job_id, part), ks.namespace, labels(spec.job_id, part)
        ),
        "spec": pod,
    }


def cluster_service(
    job_id: str, cluster: str, ks: KubernetesSettings
) -> dict[str, Any]:
    part = cluster_part(cluster, AGGREGATOR)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(
            cluster_service_name(job_id, cluster), ks.namespace, labels(job_id, part)
        ),
        "spec": {
            # Its learners are in the cluster; nothing outside dials it.
            "type": "ClusterIP",
            "selector": labels(job_id, part),
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

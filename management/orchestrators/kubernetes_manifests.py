"""The `kubernetes` orchestrator's objects, built by pure functions.

Every object a job (or an inference server) needs is a plain dict here, so it is
golden-tested by equality and validated against the schemas of the Kubernetes
version FLOps targets (`kubernetes_validation`); `kubernetes.py` only sends
them. Their names, labels and shared pod parts are `kubernetes_objects`'.
"""

from __future__ import annotations

from typing import Any

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
from flops_management.orchestrators.kubernetes_objects import (
    HOSTNAME_LABEL,
    INFERENCE,
    KubernetesSettings,
    ca_secret,
    env_secret,
    env_vars,
    labels,
    meta,
    mount,
    node_key_secret,
    object_name,
    pod_spec,
    secret,
    secret_volume,
    server_labels,
    superlink_secret,
)
from flops_management.orchestrators.local_commands import THREAD_VARIABLES
from flops_management.orchestrators.node_auth import NODE_KEY_FILE
from flops_management.sandbox import Identity


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
        "env": env_vars({**BASE_ENVIRONMENT, **spec.env}),
        "ports": [{"name": "fleet", "containerPort": SUPERLINK_PORT}],
        "volumeMounts": [mount("tls", TLS_DIR)] if tls else [],
    }
    if env_secret is not None:  # its MLflow credential: not in the pod's spec
        container["envFrom"] = [{"secretRef": {"name": env_secret}}]
    volumes = [secret_volume("tls", superlink_secret(spec.job_id))] if tls else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, ks.namespace, labels(spec.job_id, AGGREGATOR)),
        "spec": pod_spec(container, volumes, spec.identity, ks, "Never"),
    }


def aggregator_service(job_id: str, ks: KubernetesSettings) -> dict[str, Any]:
    name = object_name(job_id, AGGREGATOR)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, ks.namespace, labels(job_id, AGGREGATOR)),
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
    superlink: str | None = None,
) -> dict[str, Any]:
    """`index`: its partition; `tls`: it reads the CA's Secret at /tls and its
    node key's at /node-key (False: plaintext, a dev switch); `superlink`: what
    it dials (None: the root's Service; a cluster's in hierarchical mode)."""
    name = object_name(spec.job_id, learner.name)
    superlink = superlink or f"{object_name(spec.job_id, AGGREGATOR)}:{SUPERLINK_PORT}"
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
        mounts.append(mount("data", LEARNER_DATA))
        if "persistentVolumeClaim" in data:  # its own folder of the claim
            mounts[-1]["subPath"] = learner.name
        volumes.append(data)
    if tls:
        mounts += [mount("tls", TLS_DIR), mount("node-key", NODE_KEY_DIR)]
        volumes.append(secret_volume("tls", ca_secret(spec.job_id)))
        volumes.append(
            secret_volume("node-key", node_key_secret(spec.job_id, learner.name))
        )
    container = {
        "name": "learner",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": command,
        "env": env_vars(
            {**BASE_ENVIRONMENT, **spec.env, **dict.fromkeys(THREAD_VARIABLES, threads)}
        ),
        "resources": resources(spec),
        "volumeMounts": mounts,
    }
    pod = pod_spec(container, volumes, spec.identity, ks, "Never")
    selector = node_selector(learner)
    if selector:
        pod["nodeSelector"] = selector
    tags = labels(spec.job_id, "learner", learner.name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, ks.namespace, tags),
        "spec": pod,
    }


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
        "env": env_vars(BASE_ENVIRONMENT),
        "ports": [{"name": "http", "containerPort": SERVER_PORT}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, ks.namespace, tags),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(tags)},
            "template": {
                "metadata": {"labels": dict(tags)},
                "spec": pod_spec(container, [], identity, ks, "Always"),
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
        "metadata": meta(object_name(project_id, INFERENCE), ks.namespace, tags),
        "spec": {
            "type": ks.service_type,
            "selector": dict(tags),
            "ports": [
                {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }

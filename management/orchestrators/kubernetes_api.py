"""The few API calls the `kubernetes` orchestrator makes, through the official
`kubernetes` client, and what their answers mean as component states.

Exactly these calls (and so exactly deploy/kubernetes/rbac.yaml's verbs):
create/get/list/delete of namespaced pods, services, secrets and
apps/v1 deployments, list by label selector, and a pod's log. Nothing is
patched or watched; a job is found again by its labels alone.
"""

from __future__ import annotations

import logging
from typing import Any

from flops.errors import FlopsError, ServiceUnavailableError
from flops_management.orchestrators.kubernetes_objects import (
    KubernetesSettings,
    job_selector,
)
from flops_management.orchestrators.topology import ComponentState, ComponentStatus

log = logging.getLogger(__name__)

# kind -> (API, resource as in URLs and RBAC); the order a job is torn down in.
RESOURCES = {
    "Pod": ("core", "pods"),
    "Service": ("core", "services"),
    "Secret": ("core", "secrets"),
    "Deployment": ("apps", "deployments"),
}
# Every (verb, resource) this module asks of the API server: what
# deploy/kubernetes/rbac.yaml grants, no more (checked by the unit tests, and
# against the requests seen by the stand-in API server in the integration test).
CALLS = frozenset(
    {
        *(("create", r) for r in ("pods", "services", "secrets", "deployments")),
        *(("list", r) for r in ("pods", "services", "secrets", "deployments")),
        *(("delete", r) for r in ("pods", "services", "secrets", "deployments")),
        ("get", "pods"),
        ("get", "deployments"),
        ("get", "pods/log"),
    }
)
_SUFFIX = {
    "pods": "pod",
    "services": "service",
    "secrets": "secret",
    "deployments": "deployment",
}


def connect(ks: KubernetesSettings) -> Any:
    """An ApiClient: the kubeconfig the settings name, the in-cluster config in
    a pod, else ~/.kube/config."""
    import os

    from kubernetes import client, config  # type: ignore[import-untyped]

    try:
        if ks.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config(
            config_file=str(ks.kubeconfig) if ks.kubeconfig else None,
            context=ks.context,
        )
    except (config.ConfigException, OSError) as err:
        raise ServiceUnavailableError(
            f"No Kubernetes API server is configured ({err}).",
            hint="Set FLOPS_KUBERNETES_KUBECONFIG (and FLOPS_KUBERNETES_CONTEXT), "
            "or run the service in the cluster with deploy/kubernetes/rbac.yaml.",
        ) from err


def _refused(what: str, namespace: str, err: Any) -> FlopsError:
    """The client's ApiException as a FlopsError (status 0: no answer at all)."""
    if not err.status:
        return ServiceUnavailableError(
            f"The Kubernetes API server does not answer ({err.reason}).",
            hint="Check FLOPS_KUBERNETES_KUBECONFIG / FLOPS_KUBERNETES_CONTEXT.",
        )
    return FlopsError(
        f"The Kubernetes API server refused to {what} in namespace {namespace}: "
        f"{err.status} {err.reason}",
        hint="deploy/kubernetes/rbac.yaml lists what FLOps needs.",
    )


class KubeAPI:
    """One namespace of the API server behind `client` (an ApiClient)."""

    def __init__(self, client: Any, namespace: str) -> None:
        from kubernetes import client as k8s

        self.client = client
        self.namespace = namespace
        self._apis = {"core": k8s.CoreV1Api(client), "apps": k8s.AppsV1Api(client)}

    def _call(self, what: str, api: str, method: str, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

        try:
            return getattr(self._apis[api], method)(namespace=self.namespace, **kwargs)
        except ApiException as err:
            if err.status == 404 and method.startswith("delete"):
                return None  # gone already: what a teardown wants
            raise _refused(what, self.namespace, err) from err

    def create(self, manifest: dict[str, Any]) -> Any:
        api, resource = RESOURCES[manifest["kind"]]
        name = manifest["metadata"]["name"]
        log.debug("create %s/%s in %s", resource, name, self.namespace)
        return self._call(
            f"create {resource}/{name}",
            api,
            f"create_namespaced_{_SUFFIX[resource]}",
            body=manifest,
        )

    def get(self, resource: str, name: str) -> Any:
        """The object, or None when there is none."""
        from kubernetes.client.exceptions import ApiException

        api = "apps" if resource == "deployments" else "core"
        try:
            method = getattr(self._apis[api], f"read_namespaced_{_SUFFIX[resource]}")
            return method(name=name, namespace=self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise _refused(f"read {resource}/{name}", self.namespace, err) from err

    def list(
        self,
        resource: str,
        job_id: str | None = None,
        selector: dict[str, str] | None = None,
    ) -> list[Any]:
        terms = job_selector(job_id) if job_id else ""
        if selector:
            terms = ",".join(f"{k}={v}" for k, v in selector.items())
        api = "apps" if resource == "deployments" else "core"
        found = self._call(
            f"list {resource}",
            api,
            f"list_namespaced_{_SUFFIX[resource]}",
            label_selector=terms,
        )
        return list(found.items)

    def delete(self, resource: str, name: str) -> None:
        api = "apps" if resource == "deployments" else "core"
        self._call(
            f"delete {resource}/{name}",
            api,
            f"delete_namespaced_{_SUFFIX[resource]}",
            name=name,
        )

    def delete_job(self, job_id: str) -> None:
        """Everything labelled with the job, pods first (they stop at once)."""
        for _, resource in RESOURCES.values():
            for item in self.list(resource, job_id):
                self.delete(resource, item.metadata.name)

    def pod_log(
        self,
        name: str,
        tail: int | None = None,
        timestamps: bool = False,
        since_seconds: int | None = None,
    ) -> str:
        """What the pod wrote; "" while it has not started or once it is gone."""
        from kubernetes.client.exceptions import ApiException

        options: dict[str, Any] = {"timestamps": timestamps}
        if tail is not None:
            options["tail_lines"] = tail
        if since_seconds is not None:
            options["since_seconds"] = since_seconds
        try:
            # Not preloaded: the client would return str(bytes) ("b'...'") for
            # a text/plain body (its `str` response type is never decoded).
            response = self._apis["core"].read_namespaced_pod_log(
                name=name, namespace=self.namespace, _preload_content=False, **options
            )
        except ApiException as err:
            if err.status in (400, 404):  # waiting to start, or deleted
                return ""
            raise _refused(f"read the log of pod {name}", self.namespace, err) from err
        data: bytes = response.data
        return data.decode("utf-8", "replace")


def pod_status(pod: Any) -> ComponentStatus:
    """A Pod (as the client reads it, or None when there is none) as a
    component's state; a terminated container's exit code is its code."""
    if pod is None:
        return ComponentStatus(ComponentState.REMOVED)
    phase = pod.status.phase if pod.status else None
    if phase == "Running":
        return ComponentStatus.running()
    if phase in ("Succeeded", "Failed"):
        code = None
        for container in pod.status.container_statuses or []:
            if container.state and container.state.terminated:
                code = container.state.terminated.exit_code
        if code is None:
            code = 0 if phase == "Succeeded" else 1
        return ComponentStatus.exited(code)
    # Pending (scheduling, pulling) and Unknown (its node lost): not yet known.
    return ComponentStatus(ComponentState.PENDING)


def pod_reason(pod: Any) -> str:
    """Why a Pod is not running, as the kubelet and scheduler say it
    (ImagePullBackOff, Unschedulable: ...), or ""."""
    if pod is None or pod.status is None:
        return ""
    for container in pod.status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason:
            return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    for condition in pod.status.conditions or []:
        if condition.status == "False" and condition.reason:
            return f"{condition.reason}: {condition.message or ''}".rstrip(": ")
    return ""


def server_status(deployment: Any, pods: list[Any]) -> ComponentStatus:
    """An inference server: removed without its Deployment, else its Pod's."""
    if deployment is None:
        return ComponentStatus(ComponentState.REMOVED)
    if not pods:
        return ComponentStatus(ComponentState.PENDING)
    states = [pod_status(pod) for pod in pods]
    running = [s for s in states if s.state is ComponentState.RUNNING]
    return running[0] if running else states[0]

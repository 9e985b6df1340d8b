"""The `kubernetes` orchestrator: a job's actors as Pods of the FL-actor image.

The aggregator (SuperLink and its executor) is a Pod behind a Service that
learners dial; each learner is a Pod pinned by its placement, with the config's
resources as requests and limits and its data from the volume the settings
name. The job's TLS folders, its learners' node keys and the aggregator's
credentials are Secrets. Every object is built by `kubernetes_manifests`,
validated (`kubernetes_validation`) before the first is sent, and labelled with
the job: `cancel()` and a restarted service's `cleanup()` delete by that label.
Inference servers are a Deployment and a Service, labelled with their project.
The calls made, in order, and the RBAC they need: deploy/kubernetes/rbac.yaml.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flops.actor_commands import CA_FILE, SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE
from flops.errors import ConfigError, FlopsError, ServiceUnavailableError
from flops.node_key import NodeKey
from flops.waiting import wait_until
from flops_management.orchestrators import kubernetes_manifests as m
from flops_management.orchestrators.base import (
    AGGREGATOR,
    Deployment,
    DeploymentSpec,
    LogLine,
    Orchestrator,
    ServerSpec,
    job_components,
    placed_learners,
)
from flops_management.orchestrators.flower_tls import issue_job_tls
from flops_management.orchestrators.kubernetes_api import (
    KubeAPI,
    connect,
    pod_reason,
    pod_status,
    server_status,
)
from flops_management.orchestrators.kubernetes_validation import validate_all
from flops_management.orchestrators.node_auth import NODE_KEY_FILE, key_folder
from flops_management.orchestrators.topology import (
    Capability,
    Component,
    ComponentState,
    ComponentStatus,
)
from flops_management.settings import Settings

log = logging.getLogger(__name__)

# (Control API address, CA file, [(learner, public key PEM)]) -> node ids. The
# seam where node keys reach the SuperLink (tests put a recorder here).
NodeRegistrar = Callable[[str, Path, list[tuple[str, bytes]]], dict[str, int]]


def register_with_superlink(
    address: str, ca_file: Path, keys: list[tuple[str, bytes]], timeout: float = 120.0
) -> dict[str, int]:
    """Through the SuperLink's Control API, retried while its Pod starts serving
    (Running comes before the port answers)."""
    from flops_management.orchestrators.superlink_control import SuperLinkControl

    deadline = time.monotonic() + timeout
    nodes: dict[str, int] = {}
    while True:
        try:
            with SuperLinkControl(address, ca_file) as control:
                for name, pem in keys:
                    # A key registered once cannot be registered again.
                    if name not in nodes:
                        nodes[name] = control.register(pem, name).node_id
            return nodes
        except FlopsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


LOG_SLACK_S = 10


def stamp_key(stamp: str) -> str:
    """An RFC 3339 timestamp (the kubelet's, up to nanoseconds, trailing zeros
    trimmed) as a string that sorts as the time does."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{whole}.{fraction.ljust(9, '0')}"


def since_seconds(key: str) -> int:
    """Whole seconds from `key` (a `stamp_key`) to now, at least 1."""
    then = datetime.strptime(key[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return max(1, math.ceil(datetime.now(UTC).timestamp() - then.timestamp()))


class KubernetesDeployment(Deployment):
    def __init__(self, api: KubeAPI, spec: DeploymentSpec, control: str) -> None:
        self.api = api
        self.job_id = spec.job_id
        self._control = control
        self._components = job_components(spec.learners, separate=False)
        self.pods = {
            c.name: m.object_name(spec.job_id, c.name) for c in self._components
        }
        # Per component: the last log line's timestamp and how many lines had it.
        self._seen: dict[str, tuple[str, int]] = {}

    @property
    def control_address(self) -> str:
        return self._control

    def components(self) -> list[Component]:
        return list(self._components)

    def status(self) -> dict[str, ComponentStatus]:
        pods = {p.metadata.name: p for p in self.api.list("pods", self.job_id)}
        return {c: pod_status(pods.get(pod)) for c, pod in self.pods.items()}

    def logs(self) -> Iterator[LogLine]:
        for component, pod in self.pods.items():
            yield from self._new_lines(component, pod)

    def _new_lines(self, component: str, pod: str) -> Iterator[LogLine]:
        """The pod's log since the last line returned: asked with timestamps
        for a window from that line's second on (with slack for clock skew
        between this host and the node), lines already returned skipped."""
        last, count = self._seen.get(component, ("", 0))
        since = None if not last else since_seconds(last) + LOG_SLACK_S
        text = self.api.pod_log(pod, timestamps=True, since_seconds=since)
        skip = count
        for row in text.splitlines():
            stamp, _, line = row.partition(" ")
            key = stamp_key(stamp)
            if key < last or (key == last and skip > 0):
                skip -= key == last
                continue
            last, count = key, (count + 1 if key == last else 1)
            self._seen[component] = (last, count)
            yield LogLine(component, line)

    def wait(self, timeout: float | None = None) -> bool:
        return wait_until(
            lambda: not any(state.alive for state in self.status().values()),
            timeout,
            interval=0.5,
        )

    def cancel(self) -> None:
        self.api.delete_job(self.job_id)

    def stop_learner(self, learner: str) -> None:
        for component in self._components:
            if component.learner == learner:
                self.api.delete("pods", self.pods[component.name])

    def tail(self, component: str, lines: int = 20) -> str:
        pod = self.pods.get(component)
        return "" if pod is None else self.api.pod_log(pod, tail=lines)

    def runtime_info(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "namespace": self.api.namespace,
            "pods": dict(self.pods),
        }


class KubernetesOrchestrator(Orchestrator):
    name = "kubernetes"
    needs_image = True
    capabilities = frozenset(
        {
            Capability.PLACE_ON_NODE,
            Capability.PLACE_BY_LABELS,
            Capability.INFERENCE_SERVERS,
        }
    )

    def __init__(
        self,
        settings: Settings,
        kube: m.KubernetesSettings | None = None,
        api_client: Any = None,
        registrar: NodeRegistrar | None = None,
    ) -> None:
        super().__init__(settings)
        self.kube = kube or m.KubernetesSettings()
        self._api_client = api_client
        self._api: KubeAPI | None = None
        self.registrar = registrar or register_with_superlink

    @property
    def api(self) -> KubeAPI:
        if self._api is None:
            client = self._api_client or connect(self.kube)
            self._api = KubeAPI(client, self.kube.namespace)
        return self._api

    def notes(self, spec: DeploymentSpec) -> list[str]:
        notes = []
        if self.kube.service_type != "ClusterIP":
            notes.append(
                f"kubernetes orchestrator: the SuperLink's {self.kube.service_type} "
                "Service exposes its Control API too, which has no authentication"
            )
        return notes

    def check(
        self, spec: DeploymentSpec, able: dict[Capability, list[str]] | None = None
    ) -> None:
        super().check(spec, able)
        self._data_check(spec)

    def _data_check(self, spec: DeploymentSpec) -> None:
        wants = [ls.name for ls in placed_learners(spec.learners) if ls.data]
        if wants and not (self.kube.data_pvc or self.kube.data_host_path):
            raise ConfigError(
                f"Learners {', '.join(wants)} read stored data, but the kubernetes "
                "orchestrator has no volume to read it from.",
                hint="Set FLOPS_KUBERNETES_DATA_PVC (or ..._DATA_HOST_PATH) to a "
                "volume with one folder per learner name.",
            )

    def submit(self, spec: DeploymentSpec) -> Deployment:
        if spec.image is None:
            raise FlopsError("The kubernetes orchestrator needs the project's image.")
        self._data_check(spec)
        ks, job = self.kube, spec.job_id
        hosts = m.superlink_hosts(job, ks.namespace, ks)
        # The files go into Secrets, read here: the service's, not the tenant's.
        tls = issue_job_tls(self.settings, spec.workdir, hosts, None)
        control = ks.control_host or m.control_address(job, ks.namespace)
        placed = placed_learners(spec.learners)
        tls_files = None
        if tls is not None:
            files = [CA_FILE, SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE]
            tls_files = {f: (tls.superlink / f).read_bytes() for f in files}
        first = m.aggregator_secrets(job, ks, spec.aggregator_env, tls_files)
        env = m.env_secret(job) if spec.aggregator_env else None
        first += [
            m.aggregator_pod(spec, ks, tls is not None, env),
            m.aggregator_service(job, ks),
        ]
        learners = [
            m.learner_pod(spec, learner, index, ks, tls is not None)
            for index, learner in enumerate(placed)
        ]
        validate_all([*first, *learners])
        deployment = KubernetesDeployment(self.api, spec, control)
        deployment.root_certificates = tls.ca_file if tls else None
        try:
            for manifest in first:
                self.api.create(manifest)
            self._wait_running(deployment)
            if tls is not None:
                deployment.nodes = self._enrol(spec, control, tls.ca_file)
            else:
                log.info("job %s: plaintext Flower, no node keys to register", job)
            for manifest in learners:
                self.api.create(manifest)
        except BaseException:
            # What was created goes; an API server gone away must not hide why.
            with contextlib.suppress(FlopsError):
                deployment.cancel()
            raise
        return deployment

    def _wait_running(self, deployment: KubernetesDeployment) -> None:
        """Learners are created once the SuperLink's Pod runs (its keys first)."""
        deadline = time.monotonic() + self.kube.ready_timeout
        name = deployment.pods[AGGREGATOR]
        while True:
            pod = self.api.get("pods", name)
            state = pod_status(pod)
            if state.state is ComponentState.RUNNING:
                return
            if not state.alive or time.monotonic() > deadline:
                why = pod_reason(pod)
                raise FlopsError(
                    f"The aggregator Pod {name} did not run ({state}"
                    + (f", {why}" if why else "")
                    + "):\n"
                    + deployment.tail(AGGREGATOR),
                    hint="`kubectl describe pod` tells why (image pull, quota...).",
                )
            time.sleep(0.2)

    def _enrol(self, spec: DeploymentSpec, control: str, ca: Path) -> dict[str, int]:
        """Each learner's key made here, its public half registered with the
        SuperLink, its private half a Secret only its Pod mounts."""
        keys: list[tuple[str, bytes]] = []
        for learner in placed_learners(spec.learners):
            key = NodeKey.create(key_folder(spec, learner.name) / NODE_KEY_FILE)
            keys.append((learner.name, key.public_pem()))
            secret = m.secret(
                m.node_key_secret(spec.job_id, learner.name),
                self.kube.namespace,
                m.labels(spec.job_id, "learner", learner.name),
                {NODE_KEY_FILE: key.private_path.read_bytes()},
            )
            validate_all([secret])
            self.api.create(secret)
        return self.registrar(control, ca, keys)

    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        job = runtime_info.get("job_id")
        if job:
            namespace = str(runtime_info.get("namespace", self.kube.namespace))
            KubeAPI(self.api.client, namespace).delete_job(str(job))

    # -- inference servers: a Deployment and its Service -------------------------

    def start_server(self, spec: ServerSpec) -> dict[str, Any]:
        if spec.image is None:
            raise FlopsError("The kubernetes orchestrator serves the inference image.")
        ks = self.kube
        manifests = [
            m.server_deployment(spec.project_id, spec.image, spec.identity, ks),
            m.server_service(spec.project_id, spec.port, ks),
        ]
        validate_all(manifests)
        handle = {
            "namespace": ks.namespace,
            "name": manifests[0]["metadata"]["name"],
            "project_id": spec.project_id,
        }
        self.stop_server(handle)  # a server of an earlier deployment gives way
        for manifest in manifests:
            self.api.create(manifest)
        return handle

    def _server_api(self, handle: dict[str, Any]) -> KubeAPI:
        return KubeAPI(self.api.client, str(handle["namespace"]))

    def server_status(self, handle: dict[str, Any]) -> ComponentStatus:
        api = self._server_api(handle)
        found = api.get("deployments", str(handle["name"]))
        pods = api.list("pods", selector=m.server_labels(str(handle["project_id"])))
        return server_status(found, pods)

    def server_logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        api = self._server_api(handle)
        pods = api.list("pods", selector=m.server_labels(str(handle["project_id"])))
        return "" if not pods else api.pod_log(pods[0].metadata.name, tail=lines)

    def stop_server(self, handle: dict[str, Any]) -> None:
        api = self._server_api(handle)
        for resource in ("deployments", "services"):
            with contextlib.suppress(ServiceUnavailableError):
                api.delete(resource, str(handle["name"]))

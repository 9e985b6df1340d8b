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
import time
from pathlib import Path
from typing import Any

from flops.actor import RELAY_DIR
from flops.actor_commands import CA_FILE, SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE
from flops.app.relay import relay_path
from flops.errors import ConfigError, FlopsError, ServiceUnavailableError
from flops.node_key import NodeKey
from flops_management.orchestrators import kubernetes_clusters as c
from flops_management.orchestrators import kubernetes_manifests as m
from flops_management.orchestrators import kubernetes_objects as o
from flops_management.orchestrators.base import (
    AGGREGATOR,
    UPLINK,
    ClusterEndpoint,
    Deployment,
    DeploymentSpec,
    Orchestrator,
    ServerSpec,
    cluster_part,
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
from flops_management.orchestrators.kubernetes_deployment import (
    KubernetesDeployment,
    NodeRegistrar,
    register_with_superlink,
)
from flops_management.orchestrators.kubernetes_validation import validate_all
from flops_management.orchestrators.node_auth import NODE_KEY_FILE, key_folder
from flops_management.orchestrators.topology import (
    Capability,
    ComponentState,
    ComponentStatus,
    Unsupported,
)
from flops_management.settings import Settings

log = logging.getLogger(__name__)


class KubernetesOrchestrator(Orchestrator):
    name = "kubernetes"
    needs_image = True
    capabilities = frozenset(
        {
            Capability.PLACE_ON_NODE,
            Capability.PLACE_BY_LABELS,
            Capability.INFERENCE_SERVERS,
            Capability.CLUSTERS,
        }
    )

    def __init__(
        self,
        settings: Settings,
        kube: o.KubernetesSettings | None = None,
        api_client: Any = None,
        registrar: NodeRegistrar | None = None,
    ) -> None:
        super().__init__(settings)
        self.kube = kube or o.KubernetesSettings()
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
        if spec.clusters and self.kube.control_host:
            raise Unsupported(
                "Hierarchical mode on kubernetes needs the FLOps service inside the "
                "cluster: each cluster's SuperLink is reached at its Service, and "
                "FLOPS_KUBERNETES_CONTROL_HOST names the root's alone.",
                hint="Run the service in the cluster, or use mode 'classic'.",
            )

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
        hosts += c.cluster_hosts(job, ks.namespace, spec.clusters)
        # The files go into Secrets, read here: the service's, not the tenant's.
        tls = issue_job_tls(self.settings, spec.workdir, hosts, None)
        control = ks.control_host or m.control_address(job, ks.namespace)
        tls_files = None
        if tls is not None:
            files = [CA_FILE, SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE]
            tls_files = {f: (tls.superlink / f).read_bytes() for f in files}
        first = m.aggregator_secrets(job, ks, spec.aggregator_env, tls_files)
        env = o.env_secret(job) if spec.aggregator_env else None
        first += [
            m.aggregator_pod(spec, ks, tls is not None, env),
            m.aggregator_service(job, ks),
        ]
        learners = [
            m.learner_pod(
                spec, learner, spec.learners.index(learner), ks, tls is not None
            )
            for learner in spec.cluster_learners(None)
        ]
        clusters = {
            cluster.name: (
                [
                    c.cluster_pod(spec, cluster, ks, tls is not None, env),
                    c.cluster_service(job, cluster.name, ks),
                ],
                [
                    m.learner_pod(
                        spec,
                        learner,
                        spec.learners.index(learner),
                        ks,
                        tls is not None,
                        c.cluster_link(job, cluster.name),
                    )
                    for learner in spec.cluster_learners(cluster.name)
                ],
            )
            for cluster in spec.clusters
        }
        every = [obj for pair in clusters.values() for part in pair for obj in part]
        validate_all([*first, *learners, *every])
        deployment = KubernetesDeployment(self.api, spec, control)
        ca = deployment.root_certificates = tls.ca_file if tls else None
        try:
            for manifest in first:
                self.api.create(manifest)
            self._wait_running(deployment, AGGREGATOR)
            uplinks = [cluster_part(name, UPLINK) for name in clusters]
            roots = [ls.name for ls in spec.cluster_learners(None)] + uplinks
            deployment.nodes = self._enrol(spec, control, ca, roots)
            for manifest in learners:
                self.api.create(manifest)
            for name, (aggregator, members) in clusters.items():
                for manifest in aggregator:
                    self.api.create(manifest)
                self._wait_running(deployment, cluster_part(name, AGGREGATOR))
                link = c.cluster_control(job, name, ks.namespace)
                deployment.clusters[name] = ClusterEndpoint(link, relay_path(RELAY_DIR))
                names = [ls.name for ls in spec.cluster_learners(name)]
                deployment.nodes.update(self._enrol(spec, link, ca, names))
                for manifest in members:
                    self.api.create(manifest)
        except BaseException:
            # What was created goes; an API server gone away must not hide why.
            with contextlib.suppress(FlopsError):
                deployment.cancel()
            raise
        return deployment

    def _wait_running(self, deployment: KubernetesDeployment, component: str) -> None:
        """Learners are created once their SuperLink's Pod runs (keys first)."""
        deadline = time.monotonic() + self.kube.ready_timeout
        name = deployment.pods[component]
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
                    + deployment.tail(component),
                    hint="`kubectl describe pod` tells why (image pull, quota...).",
                )
            time.sleep(0.2)

    def _enrol(
        self, spec: DeploymentSpec, control: str, ca: Path | None, names: list[str]
    ) -> dict[str, int]:
        """Each node's key made here (a learner's, a cluster's uplink), its
        public half registered with the SuperLink at `control`, its private half
        a Secret only its Pod mounts; nothing in plaintext (`ca` None)."""
        if ca is None or not names:
            if ca is None:
                log.info("job %s: plaintext Flower, no node keys", spec.job_id)
            return {}
        keys: list[tuple[str, bytes]] = []
        for name in names:
            key = NodeKey.create(key_folder(spec, name) / NODE_KEY_FILE)
            keys.append((name, key.public_pem()))
            secret = o.secret(
                o.node_key_secret(spec.job_id, name),
                self.kube.namespace,
                o.labels(spec.job_id, "learner", name),
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
        pods = api.list("pods", selector=o.server_labels(str(handle["project_id"])))
        return server_status(found, pods)

    def server_logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        api = self._server_api(handle)
        pods = api.list("pods", selector=o.server_labels(str(handle["project_id"])))
        return "" if not pods else api.pod_log(pods[0].metadata.name, tail=lines)

    def stop_server(self, handle: dict[str, Any]) -> None:
        api = self._server_api(handle)
        for resource in ("deployments", "services"):
            with contextlib.suppress(ServiceUnavailableError):
                api.delete(resource, str(handle["name"]))

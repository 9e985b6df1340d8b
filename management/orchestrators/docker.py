"""The `docker` orchestrator: actors as containers of the project's FL-actor image.

Drives any Docker Engine API through the `docker` package: Docker itself, or
Podman's compatible service (`flops up` starts one when no Docker socket exists).
One container per actor, labelled with the job; learners publish no ports and
get the config's CPU and memory limits; every container's output is streamed
into the job's events; `cancel()` removes them all, and `cleanup()` finds what a
dead service left behind by its label.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, NotFound
from docker.types import Ulimit

from flops import subprocesses
from flops.errors import FlopsError, ServiceUnavailableError
from flops.waiting import port_open, wait_until
from flops_management.images.base import native_platform
from flops_management.images.commands import arch
from flops_management.orchestrators import fleet_front
from flops_management.orchestrators.base import (
    AGGREGATOR,
    FLEET_FRONT,
    SUPERLINK,
    UPLINK,
    ClusterEndpoint,
    Deployment,
    DeploymentSpec,
    LogLine,
    Orchestrator,
    ServerSpec,
    cluster_part,
    has_joined,
    job_components,
)
from flops_management.orchestrators.docker_clusters import (
    ClusterPorts,
    cluster_container_spec,
    cluster_hosts,
    cluster_learner_specs,
    endpoint,
)
from flops_management.orchestrators.docker_containers import (
    HOST_NETWORK,
    SUPERLINK_PORT,
    ContainerSpec,
    container_name,
    container_specs,
    server_container_spec,
    superlink_hosts,
)
from flops_management.orchestrators.flower_tls import JobTLS, issue_job_tls
from flops_management.orchestrators.host import stage_learner_data
from flops_management.orchestrators.local_actors import READY_TIMEOUT_S
from flops_management.orchestrators.log_file import LogFile
from flops_management.orchestrators.node_auth import enrol_learners, enrol_nodes
from flops_management.orchestrators.ports import free_port
from flops_management.orchestrators.topology import (
    Capability,
    Component,
    ComponentState,
    ComponentStatus,
)
from flops_management.sandbox import sandbox_for
from flops_management.settings import Settings

JOB_LABEL = "io.flops.job"
ROLE_LABEL = "io.flops.role"
# Inference servers carry their project, not a job: a job's teardown, which
# removes everything labelled with the job, must leave them running.
SERVER_LABEL = "io.flops.inference-server"


def connect(settings: Settings) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=settings.docker_url, timeout=120)
        client.ping()
    except DockerException as err:
        raise ServiceUnavailableError(
            f"No container engine answers at {settings.docker_url} ({err}).",
            hint="`flops up` starts Podman's service when Podman is installed "
            "(`make system`); or set FLOPS_DOCKER_HOST to a Docker Engine.",
        ) from err
    return client


class DockerDeployment(Deployment):
    def __init__(
        self,
        client: docker.DockerClient,
        job_id: str,
        control: str,
        spec: DeploymentSpec,
    ) -> None:
        self.client = client
        self._components = job_components(spec.learners, False, spec.clusters)
        self.job_id = job_id
        self._control = control
        self.containers: dict[str, Any] = {}
        self._lines: collections.deque[LogLine] = collections.deque()
        self._network: str | None = None
        # The Fleet front for joined learners: a process of this host's, beside
        # the containers (it forwards to the SuperLink's published port).
        self.front: subprocess.Popen[bytes] | None = None
        self._front_log: LogFile | None = None

    def start_front(
        self, settings: Settings, workdir: Path, tls: JobTLS, link_port: int
    ) -> None:
        front = fleet_front.plan(settings)
        self._front_log = LogFile(workdir / "logs" / f"{FLEET_FRONT}.log")
        self.front = fleet_front.start(
            settings,
            workdir,
            front,
            f"127.0.0.1:{link_port}",
            tls,
            self._front_log.path,
        )
        self.fleet_address = front.address

    @property
    def control_address(self) -> str:
        return self._control

    def add(self, role: str, container: Any) -> None:
        self.containers[role] = container
        threading.Thread(target=self._pump, args=(role, container), daemon=True).start()

    def _pump(self, role: str, container: Any) -> None:
        try:
            for chunk in container.logs(stream=True, follow=True):
                for line in chunk.decode("utf-8", "replace").splitlines():
                    self._lines.append(LogLine(role, line))
        except DockerException:
            pass  # the container was removed: its output ends here

    def components(self) -> list[Component]:
        return list(self._components)

    def status(self) -> dict[str, ComponentStatus]:
        states = {}
        for role, container in self.containers.items():
            try:
                container.reload()
            except NotFound:
                states[role] = ComponentStatus(ComponentState.REMOVED)
                continue
            states[role] = container_status(container.attrs["State"])
        if self.front is not None:
            code = self.front.poll()
            states[FLEET_FRONT] = (
                ComponentStatus.running()
                if code is None
                else ComponentStatus.exited(code)
            )
        return states

    def logs(self) -> Iterator[LogLine]:
        if self._front_log is not None:
            for line in self._front_log.new_lines():
                self._lines.append(LogLine(FLEET_FRONT, line))
        while self._lines:
            yield self._lines.popleft()

    def cancel(self) -> None:
        if self.front is not None:
            subprocesses.kill_groups([self.front], grace=1.0)
        remove_job(self.client, self.job_id)

    def stop_learner(self, learner: str) -> None:
        container = self.containers.get(learner)
        if container is None:
            return
        with contextlib.suppress(DockerException):
            container.stop(timeout=3)  # SIGTERM: its SuperNode leaves at once

    def tail(self, component: str, lines: int = 20) -> str:
        if component == FLEET_FRONT and self._front_log is not None:
            return self._front_log.tail(lines)
        try:
            output: bytes = self.containers[component].logs(tail=lines)
        except (KeyError, DockerException):
            return ""
        return output.decode("utf-8", "replace")

    def runtime_info(self) -> dict[str, Any]:
        return {
            "containers": {role: c.id for role, c in self.containers.items()},
            "job_id": self.job_id,
            "docker_url": self.client.api.base_url,
            **({"front_pid": self.front.pid} if self.front is not None else {}),
        }


def container_status(state: dict[str, Any]) -> ComponentStatus:
    """A container's `State` (as the engine inspects it) as a component's."""
    status = state.get("Status")
    if status == "created":
        return ComponentStatus(ComponentState.PENDING)
    if status in ("running", "restarting", "paused"):
        return ComponentStatus.running()
    if status == "removing":
        return ComponentStatus(ComponentState.REMOVED)
    return ComponentStatus.exited(state.get("ExitCode"))


def remove_job(client: docker.DockerClient, job_id: str) -> None:
    for container in client.containers.list(
        all=True, filters={"label": f"{JOB_LABEL}={job_id}"}
    ):
        with contextlib.suppress(NotFound):
            container.remove(force=True)


class DockerOrchestrator(Orchestrator):
    name = "docker"
    needs_image = True
    capabilities = frozenset(
        {
            Capability.INFERENCE_SERVERS,
            Capability.JOINED_LEARNERS,
            Capability.CLUSTERS,
        }
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    def notes(self, spec: DeploymentSpec) -> list[str]:
        info = self.client.info()
        notes = []
        if spec.resources.memory is not None and not info.get("MemoryLimit"):
            notes.append(
                "docker orchestrator: this engine cannot limit memory; "
                f"memory {spec.resources.memory} is not applied"
            )
        if spec.resources.cpu is not None and not info.get("CpuCfsQuota"):
            notes.append(
                "docker orchestrator: this engine cannot limit CPU (no CFS quota); "
                f"cpu {spec.resources.cpu} is not applied"
            )
        return notes

    def _check_network(self) -> str:
        network = self.settings.docker_network
        uri = self.settings.actor_tracking_uri
        if network != HOST_NETWORK and self.settings.actors_see_loopback_mlflow:
            raise FlopsError(
                f"Actors on the container network {network!r} cannot reach MLflow at "
                f"{uri} (the service's loopback).",
                hint="Set FLOPS_MLFLOW_ACTOR_URI to an address containers reach, "
                "or FLOPS_DOCKER_NETWORK=host.",
            )
        return self._ensure_network()

    def _ensure_network(self) -> str:
        network = self.settings.docker_network
        if network != HOST_NETWORK and not self.client.networks.list(names=[network]):
            self.client.networks.create(network, driver="bridge")
        return network

    def _image(self, reference: str) -> str:
        """The image by its reference, else its platform build here (tagged
        `<tag>-<arch>` by the builder), else pulled."""
        candidates = [reference]
        if "@" not in reference:  # a digest reference takes no suffix
            candidates.append(f"{reference}-{arch(native_platform())}")
        for candidate in candidates:
            try:
                self.client.images.get(candidate)
                return candidate
            except DockerException:  # not here (or a name this engine rejects)
                continue
        try:
            self.client.images.pull(reference)
        except DockerException as err:
            raise FlopsError(
                f"The engine cannot pull {reference}: {err}",
                hint="The engine must reach the registry (FLOPS_REGISTRY).",
            ) from err
        return reference

    def submit(self, spec: DeploymentSpec) -> Deployment:
        if spec.image is None:
            raise FlopsError("The docker orchestrator needs the project's image.")
        network = self._check_network()
        image = self._image(spec.image)
        # Bound read-only, read as the tenant's group.
        data = stage_learner_data(self.settings, spec)
        hosts = superlink_hosts(spec.job_id, network)
        if network != HOST_NETWORK:
            hosts += cluster_hosts(spec.job_id, spec.clusters)
        tls = issue_job_tls(self.settings, spec.workdir, hosts, spec.identity)
        link_port = free_port()
        placed = spec.cluster_learners(None)
        state = spec.workdir / "flwr" / "superlink"
        state.mkdir(parents=True, exist_ok=True)
        sandbox_for(self.settings).give(state, spec.identity)
        specs = container_specs(
            spec, network, link_port, [free_port() for _ in placed], data, tls, state
        )
        deployment = DockerDeployment(
            self.client, spec.job_id, f"127.0.0.1:{link_port}", spec
        )
        deployment.root_certificates = tls.ca_file if tls else None
        labels = {JOB_LABEL: spec.job_id}
        try:
            aggregator, *learners = specs
            deployment.add(
                aggregator.role, self._run(image, aggregator, network, labels)
            )
            self._wait_ready(deployment, aggregator, link_port)
            if has_joined(spec.learners):
                assert tls is not None  # Orchestrator.check refused plaintext
                deployment.start_front(self.settings, spec.workdir, tls, link_port)
            deployment.nodes = enrol_learners(
                self.settings, spec, deployment.control_address, tls
            )
            for container in learners:
                deployment.add(
                    container.role, self._run(image, container, network, labels)
                )
            deployment.clusters = self._start_clusters(
                spec, deployment, image, network, data, tls, link_port
            )
        except BaseException:
            deployment.cancel()
            raise
        return deployment

    def _start_clusters(
        self,
        spec: DeploymentSpec,
        deployment: DockerDeployment,
        image: str,
        network: str,
        data: dict[str, Path],
        tls: JobTLS | None,
        link_port: int,
    ) -> dict[str, ClusterEndpoint]:
        """Hierarchical mode: each cluster's container (its uplink's key
        registered at the root first), then its learners (theirs at it)."""
        root = (
            f"127.0.0.1:{link_port}"
            if network == HOST_NETWORK
            else f"{container_name(spec.job_id, AGGREGATOR)}:{SUPERLINK_PORT}"
        )
        uplinks = [cluster_part(c.name, UPLINK) for c in spec.clusters]
        deployment.nodes.update(
            enrol_nodes(self.settings, spec, deployment.control_address, tls, uplinks)
        )
        labels = {JOB_LABEL: spec.job_id}
        endpoints = {}
        for cluster in spec.clusters:
            members = spec.cluster_learners(cluster.name)
            ports = ClusterPorts(
                free_port(), free_port(), tuple(free_port() for _ in members)
            )
            state = spec.workdir / "flwr" / cluster_part(cluster.name, SUPERLINK)
            state.mkdir(parents=True, exist_ok=True)
            sandbox_for(self.settings).give(state, spec.identity)
            container = cluster_container_spec(
                spec, cluster, network, root, ports, tls, state
            )
            deployment.add(container.role, self._run(image, container, network, labels))
            self._wait_ready(deployment, container, ports.superlink)
            deployment.nodes.update(
                enrol_learners(
                    self.settings,
                    spec,
                    f"127.0.0.1:{ports.superlink}",
                    tls,
                    cluster.name,
                )
            )
            for learner in cluster_learner_specs(
                spec, cluster, network, ports, data, tls
            ):
                deployment.add(learner.role, self._run(image, learner, network, labels))
            endpoints[cluster.name] = endpoint(ports)
        return endpoints

    def _wait_ready(
        self, deployment: DockerDeployment, aggregator: ContainerSpec, port: int
    ) -> None:
        """Learners connect only once the SuperLink answers (as `flwr run` does)."""
        if not wait_until(
            lambda: port_open("127.0.0.1", port),
            READY_TIMEOUT_S,
            interval=0.2,
            hopeless=lambda: not deployment.status()[aggregator.role].alive,
        ):
            raise FlopsError(
                f"The aggregator container {aggregator.name} did not start "
                "its SuperLink:\n" + deployment.tail(aggregator.role)
            )

    def _run(
        self,
        image: str,
        container: ContainerSpec,
        network: str,
        labels: dict[str, str],
    ) -> Any:
        limits = [
            Ulimit(name=k, soft=v, hard=v)
            for k, v in self.settings.docker_ulimits.items()
        ]
        try:
            return self.client.containers.run(
                image,
                container.command,
                name=container.name,
                detach=True,
                labels={**labels, ROLE_LABEL: container.role},
                environment=container.environment,
                volumes=container.volumes,
                ports=container.ports or None,
                network_mode=network if network == HOST_NETWORK else None,
                network=None if network == HOST_NETWORK else network,
                nano_cpus=container.nano_cpus,
                mem_limit=container.mem_limit,
                ulimits=limits,
                user=container.user,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
            )
        except DockerException as err:
            raise FlopsError(
                f"The engine did not start {container.name}: {err}"
            ) from err

    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        front = int(runtime_info.get("front_pid", 0))
        if front and b"haproxy" in subprocesses.pid_cmdline(front):
            subprocesses.kill_group(front, grace=1.0)
        job = runtime_info.get("job_id")
        if job:
            remove_job(self.client, str(job))
        for container_id in runtime_info.get("containers", {}).values():
            try:
                self.client.containers.get(container_id).remove(force=True)
            except DockerException:
                continue

    # -- inference servers: a container of the inference image -----------------

    def start_server(self, spec: ServerSpec) -> dict[str, Any]:
        if spec.image is None:
            raise FlopsError("The docker orchestrator serves the inference image.")
        network = self._ensure_network()
        container = server_container_spec(
            spec.project_id, network, spec.host, spec.port, spec.identity
        )
        # A server of an earlier deployment of this project gives way.
        for old in self.client.containers.list(
            all=True, filters={"name": container.name}
        ):
            old.remove(force=True)
        started = self._run(
            self._image(spec.image),
            container,
            network,
            {SERVER_LABEL: spec.project_id},
        )
        return {"container": started.id, "name": container.name}

    def _server(self, handle: dict[str, Any]) -> Any | None:
        try:
            return self.client.containers.get(handle["container"])
        except (KeyError, NotFound):
            return None

    def server_status(self, handle: dict[str, Any]) -> ComponentStatus:
        container = self._server(handle)
        if container is None:
            return ComponentStatus(ComponentState.REMOVED)
        return container_status(container.attrs["State"])

    def server_logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        container = self._server(handle)
        if container is None:
            return ""
        output: bytes = container.logs(tail=lines)
        return output.decode("utf-8", "replace")

    def stop_server(self, handle: dict[str, Any]) -> None:
        container = self._server(handle)
        if container is not None:
            with contextlib.suppress(NotFound):
                container.remove(force=True)

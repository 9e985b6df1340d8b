"""The `oakestra` orchestrator: a job as one application of Oakestra's root
orchestrator (https://oakestra.io), each actor a microservice of the FL-actor
image.

The calls, in order (README, "Oakestra"): log in; create the job's application
with no services; add every service (the aggregator, each cluster's, each
learner: SLAs from `oakestra_plans`), so an SLA the root refuses stops the job
before anything runs; deploy the aggregator's instance and wait until it runs;
register the root's nodes' keys with its SuperLink (learners, clusters'
uplinks); deploy those learners; then per cluster the same. Everything is
undeployed and deleted when the job ends, fails or is cancelled, and by a
restarted service's `cleanup()`. Inference servers are an application of
their own with one service, its port published on the worker.

The service dials each SuperLink at its round-robin address on Oakestra's
overlay (10.30.x.y): it must run where that overlay is routed (a worker with
Oakestra's NetManager, or a route to one).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from flops.actor import RELAY_DIR
from flops.app.relay import relay_path
from flops.errors import ConfigError, FlopsError
from flops.node_key import NodeKey
from flops.waiting import wait_until
from flops_management.orchestrators import oakestra_plans as plans
from flops_management.orchestrators import oakestra_sla as sla
from flops_management.orchestrators.base import (
    AGGREGATOR,
    UPLINK,
    ClusterEndpoint,
    Deployment,
    DeploymentSpec,
    Orchestrator,
    ServerSpec,
    cluster_part,
    job_components,
    placed_learners,
)
from flops_management.orchestrators.docker_containers import SERVER_PORT
from flops_management.orchestrators.flower_tls import issue_job_tls
from flops_management.orchestrators.kubernetes_deployment import (
    NodeRegistrar,
    register_with_superlink,
)
from flops_management.orchestrators.node_auth import NODE_KEY_FILE, key_folder
from flops_management.orchestrators.oakestra_api import OakestraAPI
from flops_management.orchestrators.oakestra_deployment import (
    OakestraDeployment,
    instance_status,
    log_tail,
    undeploy_application,
)
from flops_management.orchestrators.topology import (
    Capability,
    ComponentState,
    ComponentStatus,
)
from flops_management.settings import Settings

log = logging.getLogger(__name__)


class OakestraSettings(BaseSettings):
    """FLOPS_OAKESTRA_*: the root orchestrator and what learners read."""

    model_config = SettingsConfigDict(
        env_prefix="FLOPS_OAKESTRA_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    url: str | None = None  # the root orchestrator's API, http://HOST:10000
    username: str | None = None
    password: SecretStr | None = None
    # Learner data: a CSI volume with one folder per learner name.
    data_volume: str | None = None
    csi_driver: str | None = None
    ready_timeout: float = 600.0


class OakestraOrchestrator(Orchestrator):
    name = "oakestra"
    needs_image = True
    capabilities = frozenset(
        {
            Capability.PLACE_ON_NODE,
            Capability.PLACE_IN_CLUSTER,
            Capability.INFERENCE_SERVERS,
            Capability.CLUSTERS,
        }
    )

    def __init__(
        self,
        settings: Settings,
        oakestra: OakestraSettings | None = None,
        registrar: NodeRegistrar | None = None,
    ) -> None:
        super().__init__(settings)
        self.oakestra = oakestra or OakestraSettings()
        self.registrar = registrar or register_with_superlink
        self._client: OakestraAPI | None = None

    def _api(self) -> OakestraAPI:
        """The root's client, made once: each new one logs in again."""
        if self._client is not None:
            return self._client
        o = self.oakestra
        unset = [
            f"FLOPS_OAKESTRA_{name.upper()}"
            for name in ("url", "username", "password")
            if getattr(o, name) is None
        ]
        if unset:
            raise ConfigError(
                f"The oakestra orchestrator needs {', '.join(unset)}.",
                hint="Name the root orchestrator's API (http://HOST:10000) and an "
                "Oakestra user FLOps deploys as.",
            )
        assert o.url and o.username and o.password
        self._client = OakestraAPI(o.url, o.username, o.password.get_secret_value())
        return self._client

    def _data_volume(self, spec: DeploymentSpec) -> plans.DataVolume | None:
        wants = [ls.name for ls in placed_learners(spec.learners) if ls.data]
        o = self.oakestra
        if o.data_volume and o.csi_driver:
            return plans.DataVolume(o.data_volume, o.csi_driver)
        if wants:
            raise ConfigError(
                f"Learners {', '.join(wants)} read stored data, but the oakestra "
                "orchestrator has no volume to read it from.",
                hint="Set FLOPS_OAKESTRA_DATA_VOLUME and FLOPS_OAKESTRA_CSI_DRIVER "
                "to a CSI volume with one folder per learner name.",
            )
        return None

    def check(
        self, spec: DeploymentSpec, able: dict[Capability, list[str]] | None = None
    ) -> None:
        super().check(spec, able)
        self._data_volume(spec)
        self._api()  # the settings are complete
        uri = self.settings.actor_tracking_uri
        if self.settings.actors_see_loopback_mlflow:
            raise ConfigError(
                f"Actors on Oakestra's workers cannot reach MLflow at {uri} (the "
                "service's loopback).",
                hint="Set FLOPS_MLFLOW_ACTOR_URI to the address workers reach "
                "MLflow at.",
            )

    def _secrets(self, spec: DeploymentSpec) -> plans.JobSecrets | None:
        """The job's SuperLink certificate (naming every SuperLink's overlay
        address) and a key per node; None in plaintext."""
        tls = issue_job_tls(
            self.settings, spec.workdir, plans.superlink_hosts(spec), None
        )
        if tls is None:
            return None
        nodes = [ls.name for ls in placed_learners(spec.learners)]
        nodes += [cluster_part(c.name, UPLINK) for c in spec.clusters]
        keys = {
            name: NodeKey.create(key_folder(spec, name) / NODE_KEY_FILE)
            for name in nodes
        }
        return plans.JobSecrets(
            superlink={
                f: (tls.superlink / f).read_bytes() for f in plans.SUPERLINK_FILES
            },
            node_keys={n: k.private_path.read_bytes() for n, k in keys.items()},
            public_keys={n: k.public_pem() for n, k in keys.items()},
            ca_file=tls.ca_file,
        )

    def submit(self, spec: DeploymentSpec) -> Deployment:
        if spec.image is None:
            raise FlopsError("The oakestra orchestrator needs the project's image.")
        data = self._data_volume(spec)
        api = self._api()
        secrets = self._secrets(spec)
        control = plans.superlink_address(spec.job_id, 0)
        components = job_components(spec.learners, False, spec.clusters)
        deployment = OakestraDeployment(api, spec.job_id, components, control, {})
        deployment.root_certificates = secrets.ca_file if secrets else None
        service_plans = {AGGREGATOR: plans.aggregator_plan(spec, secrets)}
        for cluster in spec.clusters:
            name = cluster_part(cluster.name, AGGREGATOR)
            service_plans[name] = plans.cluster_plan(spec, cluster, secrets)
        for learner in placed_learners(spec.learners):
            service_plans[learner.name] = plans.learner_plan(
                spec, learner, secrets, data
            )
        customer = self.oakestra.username or ""
        description = f"FLOps job {spec.job_id}"
        try:
            deployment.application_id = api.create_application(
                sla.application_sla(spec.job_id, customer, description, [])
            )
            for component, plan in service_plans.items():
                service = sla.microservice(plan, spec.image)
                deployment.services[component] = api.add_service(
                    sla.application_sla(
                        spec.job_id,
                        customer,
                        description,
                        [service],
                        deployment.application_id,
                    )
                )
            self._start(deployment, AGGREGATOR)
            roots = [ls.name for ls in spec.cluster_learners(None)]
            uplinks = [cluster_part(c.name, UPLINK) for c in spec.clusters]
            deployment.nodes = self._enrol(control, secrets, roots + uplinks)
            for name in roots:
                deployment.deploy(name)
            for index, cluster in enumerate(spec.clusters):
                self._start(deployment, cluster_part(cluster.name, AGGREGATOR))
                link = plans.superlink_address(spec.job_id, index + 1)
                deployment.clusters[cluster.name] = ClusterEndpoint(
                    link, relay_path(RELAY_DIR)
                )
                members = [ls.name for ls in spec.cluster_learners(cluster.name)]
                deployment.nodes.update(self._enrol(link, secrets, members))
                for name in members:
                    deployment.deploy(name)
        except BaseException:
            # What was made goes; a root gone away must not hide why.
            with contextlib.suppress(FlopsError):
                deployment.cancel()
            raise
        return deployment

    def _start(self, deployment: OakestraDeployment, component: str) -> None:
        """Deploy a SuperLink's service and wait until its instance runs."""
        deployment.deploy(component)
        wait_until(
            lambda: (
                deployment.component_status(component).state
                is not ComponentState.PENDING
            ),
            self.oakestra.ready_timeout,
            interval=deployment.wait_interval_s,
        )
        state = deployment.component_status(component)
        if state.state is not ComponentState.RUNNING:
            raise FlopsError(
                f"The {component} service of Oakestra application "
                f"{sla.app_name(deployment.job_id)} did not run ({state}):\n"
                + deployment.tail(component),
                hint="`oak service` (or the root's dashboard) shows why: "
                "an image the workers cannot pull, no worker with the "
                "resources, a cluster or node constraint nobody meets.",
            )

    def _enrol(
        self, control: str, secrets: plans.JobSecrets | None, names: list[str]
    ) -> dict[str, int]:
        """Register the nodes' keys with the SuperLink at `control` (retried
        while it starts serving); nothing in plaintext."""
        if secrets is None or not names:
            return {}
        keys = [(name, secrets.public_keys[name]) for name in names]
        return self.registrar(control, secrets.ca_file, keys)

    def cleanup(self, runtime_info: dict[str, Any]) -> None:
        api = self._api()
        application_id = runtime_info.get("application_id")
        if not application_id and runtime_info.get("job_id"):
            wanted = sla.app_name(str(runtime_info["job_id"]))
            for app in api.applications():
                if app.get("application_name") == wanted:
                    application_id = app.get("applicationID")
        if application_id:
            undeploy_application(api, str(application_id))

    # -- inference servers: an application with one service ------------------------

    def start_server(self, spec: ServerSpec) -> dict[str, Any]:
        if spec.image is None:
            raise FlopsError("The oakestra orchestrator serves the inference image.")
        api = self._api()
        name = sla.check_name(f"flopsserve{spec.project_id[:12]}")
        plan = sla.ServicePlan(
            name="server",
            args=[],
            environment={},
            port=f"{spec.port}:{SERVER_PORT}/tcp",
            one_shot=False,
            keep_image_command=True,
        )
        customer = self.oakestra.username or ""
        app_sla = sla.application_sla(
            spec.project_id,
            customer,
            f"FLOps inference server of {spec.project_id}",
            [],
            name=name,
        )
        handle: dict[str, Any] = {"project_id": spec.project_id, "app": name}
        self.stop_server(handle)  # a server of an earlier deployment gives way
        handle["application_id"] = api.create_application(app_sla)
        service = sla.microservice(plan, spec.image)
        handle["service_id"] = api.add_service(
            sla.application_sla(
                spec.project_id,
                customer,
                "",
                [service],
                handle["application_id"],
                name=name,
            )
        )
        api.deploy(handle["service_id"])
        return handle

    def _server(self, handle: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._api().service(str(handle["service_id"]))
        except FlopsError:
            return None

    def server_status(self, handle: dict[str, Any]) -> ComponentStatus:
        return instance_status(self._server(handle))

    def server_logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        return log_tail(self._server(handle), lines)

    def stop_server(self, handle: dict[str, Any]) -> None:
        api = self._api()
        wanted = str(handle.get("app") or "")
        for app in api.applications():
            if app.get("application_name") == wanted:
                undeploy_application(api, str(app["applicationID"]))

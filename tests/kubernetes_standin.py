"""A STAND-IN Kubernetes API server for tests: kmock's `KubernetesEmulator`
(kmock on PyPI, by Kopf's author), not Kubernetes, and no kubelet.

No kube-apiserver is served by the registries these machines reach, and no
kubelet runs pods here. kmock's emulator is an in-memory API server over
aiohttp on a real port: it stores what is created, serves get/list/delete,
answers 409 to a name taken and 404 to a missing object with a `Status` body,
and records every request. It runs here in a thread of its own, on its own
event loop, so the synchronous `kubernetes` client talks to it over HTTP.

What kmock leaves to its users is added as its reactions, each as the API
server or the kubelet does it:
- on create, the server's fields: metadata.uid, resourceVersion,
  creationTimestamp, a Pod's `Pending` phase, a Service's clusterIP;
- lists filtered by an equality `labelSelector` (kmock lists them all);
- a pod's log (`pods/{name}/log`, with `timestamps`, `sinceSeconds`,
  `tailLines`; 400 while the pod is Pending, as the kubelet answers).

The test plays the kubelet: `set_phase` patches a pod's status through the API
(`pods/{name}/status`, as a kubelet does) and `write_log` adds lines its log
serves. `requests` lists what FLOps sent as (verb, resource, path); the
kubelet's and the controller's own calls (their user agents) are left out.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import kmock
from kubernetes import client

T = TypeVar("T")
RESOURCES = {
    "v1/pods": "Pod",
    "v1/services": "Service",
    "v1/secrets": "Secret",
    "apps/v1/deployments": "Deployment",
}
VERBS = {
    kmock.action.CREATE: "create",
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.DELETE: "delete",
    kmock.action.UPDATE: "patch",
}
KUBELET = "kubelet-standin/1.33"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> float:
    return (
        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=UTC)
        .timestamp()
    )


def _matches(obj: dict[str, Any], selector: str) -> bool:
    obj_labels = obj.get("metadata", {}).get("labels", {})
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if obj_labels.get(key) != value:
            return False
    return True


def _resource_key(resource: kmock.resource) -> str:
    group = f"{resource.group}/" if resource.group else ""
    return f"{group}{resource.version}/{resource.plural}"


class StandinAPIServer:
    """Start with `start()`; `url` is what a kubeconfig's server names."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._logs_lock = threading.Lock()
        self._versions = itertools.count(1)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._emulator: kmock.KubernetesEmulator | None = None
        self._url = ""
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return self._url

    def start(self) -> StandinAPIServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("kmock's emulator did not start within 30 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with (
            kmock.KubernetesEmulator() as emulator,
            kmock.Server(emulator) as server,
        ):
            for name, kind in RESOURCES.items():
                emulator.resources[name] = kmock.ResourceInfo(
                    kind=kind, namespaced=True
                )
            emulator[kmock.action.CREATE] << self._created
            emulator[kmock.action.UPDATE] << self._updated
            emulator[kmock.action.LIST] << self._list
            emulator[kmock.action.FETCH, kmock.subresource("log")] << self._log
            self._emulator = emulator
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            self._url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopped.wait()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs on the emulator's loop: its objects are that loop's alone."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- reactions: what the API server and the kubelet add to kmock ---------------

    def _stored(self, request: kmock.Request) -> Any:
        assert self._emulator is not None and request.resource is not None
        name = request.name or request.data["metadata"]["name"]
        return self._emulator.objects[request.resource, request.namespace, name]

    def _created(self, request: kmock.Request) -> dict[str, Any]:
        obj = self._stored(request)
        kind = request.resource.plural if request.resource else ""
        fields: dict[str, Any] = {
            "metadata": {
                "namespace": request.namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(next(self._versions)),
                "creationTimestamp": _now()[:19] + "Z",
            }
        }
        if kind == "pods":
            fields["status"] = {"phase": "Pending"}
        elif kind == "services":
            fields["spec"] = {"clusterIP": f"10.96.0.{next(self._versions) % 250 + 2}"}
            fields["status"] = {"loadBalancer": {}}
        elif kind == "deployments":
            fields["status"] = {"replicas": 0, "availableReplicas": 0}
        obj.patch(fields)
        return dict(obj.raw)

    def _updated(self, request: kmock.Request) -> dict[str, Any]:
        obj = self._stored(request)
        obj.patch({"metadata": {"resourceVersion": str(next(self._versions))}})
        return dict(obj.raw)

    def _list(self, request: kmock.Request) -> dict[str, Any]:
        assert self._emulator is not None and request.resource is not None
        selector = request.params.get("labelSelector", "")
        items = [
            dict(obj.raw)
            for (resource, namespace, _), obj in sorted(
                self._emulator.objects.items(), key=lambda item: item[0][2]
            )
            if resource == request.resource
            and namespace == request.namespace
            and not obj.deleted
            and _matches(obj.raw, selector)
        ]
        kind = RESOURCES[_resource_key(request.resource)] + "List"
        version = "/".join(filter(None, (request.resource.group, "v1")))
        meta = {"resourceVersion": str(next(self._versions))}
        return {"kind": kind, "apiVersion": version, "metadata": meta, "items": items}

    def _log(self, request: kmock.Request) -> bytes:
        assert self._emulator is not None and request.name is not None
        key = (kmock.resource("v1/pods"), request.namespace, request.name)
        if key not in self._emulator.objects or self._emulator.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        if self._emulator.objects[key].raw["status"].get("phase") == "Pending":
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="container is waiting to start"
            )
        with self._logs_lock:
            lines = list(self.logs.get((request.namespace or "", request.name), []))
        query = request.params
        if "sinceSeconds" in query:
            now = datetime.now(UTC).timestamp()
            since = int(query["sinceSeconds"])
            lines = [(ts, text) for ts, text in lines if now - _parse(ts) <= since]
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail else []
        # The client sends Python's "True"; the API server parses it as Go does.
        stamp = query.get("timestamps", "").lower() in ("true", "1", "t")
        return "".join(
            f"{ts} {text}\n" if stamp else f"{text}\n" for ts, text in lines
        ).encode()

    # -- what the test reads ---------------------------------------------------------

    @property
    def objects(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The live objects, by (plural, namespace, name)."""

        async def snapshot() -> dict[tuple[str, str, str], dict[str, Any]]:
            assert self._emulator is not None
            return {
                (resource.plural or "", namespace or "", name): dict(obj.raw)
                for (resource, namespace, name), obj in self._emulator.objects.items()
                if not obj.deleted
            }

        return self._call(snapshot())

    @property
    def requests(self) -> list[tuple[str, str, str]]:
        """What FLOps sent, as (verb, resource[/subresource], path), in order."""

        async def recorded() -> list[tuple[str, str, str]]:
            assert self._emulator is not None
            return [
                (
                    VERBS[request.action],
                    "/".join(
                        filter(None, (request.resource.plural, request.subresource))
                    ),
                    request.url.path,
                )
                for request in self._emulator
                if request.resource is not None
                and request.action is not None
                and request.headers.get("User-Agent") != KUBELET
            ]

        return self._call(recorded())

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, namespace, name))

    def names(self, resource: str, namespace: str = "default") -> list[str]:
        return sorted(
            n for r, ns, n in self.objects if (r, ns) == (resource, namespace)
        )

    # -- what the test does as the kubelet (and a Deployment's controller) ----------

    def _core(self) -> client.CoreV1Api:
        configuration = client.Configuration()
        configuration.host = self.url
        api_client = client.ApiClient(configuration)
        api_client.user_agent = KUBELET
        return client.CoreV1Api(api_client)

    def add_pod(
        self, namespace: str, name: str, pod_labels: dict[str, str], image: str
    ) -> None:
        """A pod as a controller (a Deployment's ReplicaSet) would create it."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": pod_labels},
            "spec": {"containers": [{"name": "main", "image": image}]},
        }
        self._core().create_namespaced_pod(namespace, pod)

    def set_phase(
        self, namespace: str, name: str, phase: str, exit_code: int | None = None
    ) -> None:
        pod = self.get("pods", namespace, name)
        assert pod is not None, f"no pod {name}"
        container = pod["spec"]["containers"][0]
        state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        if phase == "Running":
            state = {"running": {"startedAt": _now()}}
        elif phase in ("Succeeded", "Failed"):
            code = exit_code if exit_code is not None else int(phase == "Failed")
            state = {"terminated": {"exitCode": code, "finishedAt": _now()}}
        status = {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "image": container["image"],
                    "imageID": "",
                    "state": state,
                }
            ],
        }
        self._core().patch_namespaced_pod_status(name, namespace, {"status": status})

    def write_log(self, namespace: str, name: str, *lines: str) -> None:
        with self._logs_lock:
            self.logs.setdefault((namespace, name), []).extend(
                (_now(), line) for line in lines
            )

"""A STAND-IN Kubernetes API server for tests: not Kubernetes, no kubelet.

No kube-apiserver is served by the registries these machines reach, and no
kubelet runs pods here. This serves, over real HTTP, only the routes the
`kubernetes` backend calls (create/get/list/delete of namespaced pods,
services, secrets and deployments, a list filtered by an equality label
selector, a pod's log), storing objects as the API server does
(metadata.uid, resourceVersion, creationTimestamp; a pod starts Pending, a
Service gets a clusterIP, a name taken is a 409, a missing object a 404 with a
`Status` body). The test plays the kubelet: `set_phase` moves a pod through
Pending, Running, Succeeded/Failed (with its container's exit code) and
`write_log` adds lines its log serves (with `timestamps`, `sinceSeconds`,
`tailLines`). Every request is recorded as (verb, resource, path) so a test
can check the call sequence and that the RBAC Role covers it.

kmock 0.8 was the first candidate (a Kubernetes API mock by Kopf's author),
but it stores the JSON it is sent without uid/resourceVersion/
creationTimestamp, ignores `labelSelector` in lists and serves no pod log.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ROUTE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>apps)/v1)/namespaces/(?P<ns>[^/]+)/"
    r"(?P<resource>pods|services|secrets|deployments)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>log))?)?$"
)
KINDS = {
    "pods": "Pod",
    "services": "Service",
    "secrets": "Secret",
    "deployments": "Deployment",
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str) -> float:
    return (
        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=UTC)
        .timestamp()
    )


def _matches(obj: dict[str, Any], selector: str) -> bool:
    obj_labels = obj["metadata"].get("labels", {})
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if obj_labels.get(key) != value:
            return False
    return True


class StandinAPIServer:
    """Start with `start()`; `url` is what a kubeconfig's server names."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._version = 0
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads `requests`

            def do_GET(self) -> None:
                standin._serve(self, "GET")

            def do_POST(self) -> None:
                standin._serve(self, "POST")

            def do_DELETE(self) -> None:
                standin._serve(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StandinAPIServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what the test does as the kubelet ---------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.objects.get((resource, namespace, name))

    def names(self, resource: str, namespace: str = "default") -> list[str]:
        with self._lock:
            return sorted(
                n for r, ns, n in self.objects if (r, ns) == (resource, namespace)
            )

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
        with self._lock:
            self.objects[("pods", namespace, name)] = self._stored(
                "pods", namespace, pod
            )

    def set_phase(
        self, namespace: str, name: str, phase: str, exit_code: int | None = None
    ) -> None:
        with self._lock:
            pod = self.objects[("pods", namespace, name)]
            container = pod["spec"]["containers"][0]["name"]
            state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
            if phase == "Running":
                state = {"running": {"startedAt": _now()}}
            elif phase in ("Succeeded", "Failed"):
                code = exit_code if exit_code is not None else int(phase == "Failed")
                state = {"terminated": {"exitCode": code, "finishedAt": _now()}}
            pod["status"] = {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": phase == "Running",
                        "restartCount": 0,
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "state": state,
                    }
                ],
            }
            self._bump(pod)

    def write_log(self, namespace: str, name: str, *lines: str) -> None:
        with self._lock:
            self.logs.setdefault((namespace, name), []).extend(
                (_now(), line) for line in lines
            )

    # -- the API server's side ---------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def _reply(
        self, handler: BaseHTTPRequestHandler, code: int, body: Any, text: bool = False
    ) -> None:
        data = body.encode() if text else json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header(
            "Content-Type", "text/plain" if text else "application/json"
        )
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _status(self, handler: BaseHTTPRequestHandler, code: int, reason: str) -> None:
        self._reply(
            handler,
            code,
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": reason, "reason": reason, "code": code},
        )  # fmt: skip

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = ROUTE.match(url.path)
        if route is None:
            self._status(handler, 404, "NotFound")
            return
        resource, ns, name = route["resource"], route["ns"], route["name"]
        if route["sub"]:
            resource += "/log"
        verb = {"POST": "create", "DELETE": "delete"}.get(method) or (
            "get" if name else "list"
        )
        with self._lock:
            self.requests.append((verb, resource, url.path))
            if resource == "pods/log":
                self._serve_log(handler, ns, name, query)
                return
            key = (resource, ns, name)
            if verb == "create":
                length = int(handler.headers.get("Content-Length", 0))
                obj = json.loads(handler.rfile.read(length))
                key = (resource, ns, obj["metadata"]["name"])
                if key in self.objects:
                    self._status(handler, 409, "AlreadyExists")
                    return
                self.objects[key] = self._stored(resource, ns, obj)
                self._reply(handler, 201, self.objects[key])
            elif verb == "list":
                selector = query.get("labelSelector", "")
                items = [
                    obj
                    for (r, n, _), obj in sorted(self.objects.items())
                    if (r, n) == (resource, ns) and _matches(obj, selector)
                ]
                kind = KINDS[resource] + "List"
                meta = {"resourceVersion": str(self._version)}
                version = "apps/v1" if route["group"] else "v1"
                body = {"kind": kind, "apiVersion": version}
                self._reply(handler, 200, {**body, "metadata": meta, "items": items})
            elif key not in self.objects:
                self._status(handler, 404, "NotFound")
            elif verb == "get":
                self._reply(handler, 200, self.objects[key])
            else:  # delete: at once (no kubelet to wait for a grace period)
                self.logs.pop((ns, name), None)
                self._reply(handler, 200, self.objects.pop(key))

    def _stored(self, resource: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.update(
            namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now()[:19] + "Z"
        )
        self._bump(obj)
        if resource == "pods":
            obj["status"] = {"phase": "Pending"}
        elif resource == "services":
            obj["spec"]["clusterIP"] = f"10.96.0.{len(self.objects) % 250 + 2}"
            obj["status"] = {"loadBalancer": {}}
        elif resource == "deployments":
            obj["status"] = {"replicas": 0, "availableReplicas": 0}
        return obj

    def _serve_log(
        self, handler: BaseHTTPRequestHandler, ns: str, name: str, query: dict[str, str]
    ) -> None:
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            self._status(handler, 404, "NotFound")
            return
        if pod["status"].get("phase") == "Pending":  # as the kubelet answers
            self._status(handler, 400, "container is waiting to start")
            return
        lines = self.logs.get((ns, name), [])
        if "sinceSeconds" in query:
            now = datetime.now(UTC).timestamp()
            lines = [
                (ts, text)
                for ts, text in lines
                if now - _parse(ts) <= int(query["sinceSeconds"])
            ]
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
        # The client sends Python's "True"; the API server parses it as Go does.
        stamp = query.get("timestamps", "").lower() in ("true", "1", "t")
        body = "".join(f"{ts} {text}\n" if stamp else f"{text}\n" for ts, text in lines)
        self._reply(handler, 200, body, text=True)

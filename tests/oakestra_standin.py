"""A stand-in for Oakestra's root orchestrator API, for the tests (not Oakestra).

No Oakestra root orchestrator can run on these machines (it needs a MongoDB
server, a Go 1.24 scheduler, cluster orchestrators and containerd workers; none
is served by the package registries). This module holds what the stand-in
checks an SLA against: the SLA schema of Oakestra's root orchestrator
(`root_orchestrator/system-manager-python/sla/schema.py`, oakestra/oakestra
v0.4.410 / alpha-v0.4.411), written out here from its fields and types, and
tested against Oakestra's own example SLAs (those the `oak-cli` package on
PyPI ships). Like Oakestra's, it allows fields it does not name.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from oakestra_utils.types.statuses import NegativeSchedulingStatus

OAKESTRA_NAME = {"type": "string", "pattern": "^[a-zA-Z0-9]{1,30}$"}

_CONSTRAINT = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string"},
        "area": {"type": "string"},
        "cluster": {"type": "string"},
        "node": {"type": "string"},
        "location": {"type": "string"},
        "threshold": {"type": "number"},
        "rigidness": {"type": "number"},
        "convergence_time": {"type": "integer"},
        "needs": {"type": "array", "items": {"type": "string"}},
        "allowed": {"type": "array", "items": {"type": "string"}},
    },
}

MICROSERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "microservice_name",
        "microservice_namespace",
        "virtualization",
        "code",
    ],
    "properties": {
        "microserviceID": {"type": "string", "maxLength": 0},
        "microservice_name": OAKESTRA_NAME,
        "microservice_namespace": OAKESTRA_NAME,
        "virtualization": {"type": "string"},
        "cmd": {"type": "array", "items": {"type": "string"}},
        "environment": {"type": "array", "items": {"type": "string"}},
        "memory": {"type": "integer"},
        "vcpus": {"type": "integer"},
        "vgpus": {"type": "integer"},
        "vtpus": {"type": "integer"},
        "bandwidth_in": {"type": "integer"},
        "bandwidth_out": {"type": "integer"},
        "storage": {"type": "integer"},
        "code": {"type": "string"},
        "state": {"type": "string"},
        "port": {"type": "string"},
        "one_shot": {"type": "boolean"},
        "privileged": {"type": "boolean"},
        "addresses": {
            "type": "object",
            "properties": {
                "rr_ip": {"type": "string"},
                "rr_ip_v6": {"type": "string"},
                "closest_ip": {"type": "string"},
                "closest_ip_v6": {"type": "string"},
                "instances": {"type": "array"},
            },
        },
        "added_files": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "constraints": {"type": "array", "items": _CONSTRAINT},
        "connectivity": {"type": "array"},
        "volumes": {"type": "array"},
        "sla_violation_strategy": {"type": "string"},
        "target_node": {"type": "string"},
    },
}

SLA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["sla_version", "customerID", "applications"],
    "properties": {
        "sla_version": {"type": "string"},
        "customerID": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "applications": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "application_name",
                    "application_namespace",
                    "microservices",
                ],
                "properties": {
                    "applicationID": {"type": "string"},
                    "application_name": OAKESTRA_NAME,
                    "application_namespace": OAKESTRA_NAME,
                    "application_desc": {"type": "string"},
                    "microservices": {"type": "array", "items": MICROSERVICE_SCHEMA},
                },
            },
        },
    },
}


def validate_sla(sla: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError where the root orchestrator would
    refuse the SLA (it also refuses any `sla_version` but "v2.0")."""
    import jsonschema

    jsonschema.validate(sla, SLA_SCHEMA)
    if sla["sla_version"] != "v2.0":
        raise jsonschema.ValidationError(f"sla_version {sla['sla_version']!r}")


# -- the stand-in API server ----------------------------------------------------


# Where Oakestra's root scheduler found no place (its own enum).
NOT_SCHEDULED = {s.value for s in NegativeSchedulingStatus}


def _twice(value: Any) -> Any:
    """What Oakestra's decorated handlers answer: JSON holding a JSON string."""
    return Response(json.dumps(json.dumps(value)), media_type="application/json")


def _oid() -> str:
    return secrets.token_hex(12)


@dataclass
class OakestraStandin:
    """Oakestra's root orchestrator routes FLOps uses, with their quirks (see
    management/orchestrators/oakestra_api.py), on a real port; every request
    is recorded as (method, path). Instances run at once unless `schedule`
    says otherwise (a status for each new instance)."""

    username: str = "Admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    schedule: str = "RUNNING"
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    url: str = ""
    # Runs the instances (tests/oakestra_worker.py); None: they only "run" in
    # the stand-in's records, with the status `schedule` names.
    worker: Any = None

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.exception_handler(HTTPException)
        async def refused(_: Request, err: HTTPException) -> JSONResponse:
            # flask-smorest's error body, as Oakestra's handlers answer
            return JSONResponse(
                {"code": err.status_code, "status": "Error", "message": err.detail},
                status_code=err.status_code,
            )

        @api.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            self.requests.append((request.method, request.url.path))
            return await call_next(request)

        def user(request: Request) -> None:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                raise HTTPException(401, "Missing or expired token")

        @api.post("/api/auth/login")
        async def login(request: Request) -> Any:
            body = await request.json()
            if (body.get("username"), body.get("password")) != (
                self.username,
                self.password,
            ):
                raise HTTPException(401, "invalid username or password")
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return {"token": token, "refresh_token": secrets.token_hex(16)}

        def sla_of(body: Any) -> dict[str, Any]:
            import jsonschema

            try:
                validate_sla(body)
            except jsonschema.ValidationError as err:
                raise HTTPException(
                    400, f"The given SLA was not formatted correctly: {err.message}"
                ) from None
            return dict(body)

        def create_service(app_id: str, spec: dict[str, Any]) -> str:
            rr_ip = spec.get("addresses", {}).get("rr_ip")
            for other in self.services.values():
                if (
                    rr_ip
                    and other.get("RR_ip") == rr_ip
                    and other["applicationID"] != app_id
                ):
                    raise ValueError(f"RR ip {rr_ip} is already in use")
            service_id = _oid()
            self.services[service_id] = {
                **spec,
                "microserviceID": service_id,
                "applicationID": app_id,
                "RR_ip": rr_ip,
                "status": "",
                "instance_list": [],
                "next_instance_progressive_number": 0,
            }
            self.apps[app_id]["microservices"].append(service_id)
            return service_id

        @api.post("/api/application/")
        async def create_application(request: Request) -> Any:
            user(request)
            sla = sla_of(await request.json())
            for wanted in sla["applications"]:
                key = (wanted["application_name"], wanted["application_namespace"])
                if any(
                    (a["application_name"], a["application_namespace"]) == key
                    for a in self.apps.values()
                ):
                    raise HTTPException(409, "An application with that name exists")
                app_id = _oid()
                self.apps[app_id] = {
                    "_id": {"$oid": app_id},
                    "applicationID": app_id,
                    "application_name": wanted["application_name"],
                    "application_namespace": wanted["application_namespace"],
                    "application_desc": wanted.get("application_desc", ""),
                    "userId": self.username,
                    "microservices": [],
                }
                for spec in wanted["microservices"]:
                    create_service(app_id, spec)
            return _twice(list(self.apps.values()))

        @api.get("/api/applications/")
        async def applications(request: Request) -> Any:
            user(request)
            return _twice(list(self.apps.values()))

        @api.delete("/api/application/{app_id}")
        async def delete_application(app_id: str, request: Request) -> Any:
            user(request)
            app = self.apps.pop(app_id, None)
            if app is None:
                raise HTTPException(501, "Application not found")
            for service_id in app["microservices"]:
                gone = self.services.pop(service_id, None)
                if gone is not None and self.worker is not None:
                    for instance in gone["instance_list"]:
                        self.worker.undeploy(service_id, instance["instance_number"])
            return {"message": "Application Deleted"}

        @api.post("/api/service/")
        async def add_service(request: Request) -> Any:
            user(request)
            sla = sla_of(await request.json())
            app_id = sla["applications"][0].get("applicationID")
            if app_id not in self.apps:
                raise HTTPException(400, "The given SLA was not formatted correctly")
            answer: dict[str, Any] = {"deployed_services": [], "failed_services": []}
            for spec in sla["applications"][0]["microservices"]:
                try:
                    answer["job_id"] = create_service(app_id, spec)
                    answer["deployed_services"].append(
                        {"service_name": spec["microservice_name"], "status": 200}
                    )
                except ValueError as err:  # Oakestra answers 200 all the same
                    answer["failed_services"].append(
                        {"service_name": spec["microservice_name"], "status": 500,
                         "message": str(err)}
                    )  # fmt: skip
            return answer

        def service_of(service_id: str) -> dict[str, Any]:
            if service_id not in self.services:
                raise HTTPException(404, "Service not found")
            return self.services[service_id]

        @api.get("/api/service/{service_id}")
        async def service(service_id: str, request: Request) -> Any:
            user(request)
            return _twice(service_of(service_id))

        @api.get("/api/services/{app_id}")
        async def application_services(app_id: str, request: Request) -> Any:
            user(request)
            if app_id not in self.apps:
                raise HTTPException(404, "Application not found")
            return _twice(
                [self.services[s] for s in self.apps[app_id]["microservices"]]
            )

        @api.post("/api/service/{service_id}/instance")
        async def deploy(service_id: str, request: Request) -> Any:
            user(request)
            found = self.services.get(service_id)
            if found is not None and self.schedule in NOT_SCHEDULED:
                # Oakestra's root scheduler found no place: no instance, a
                # negative status on the service.
                found["status"] = self.schedule
            elif found is not None:  # Oakestra answers "ok" either way
                number = found["next_instance_progressive_number"]
                found["next_instance_progressive_number"] = number + 1
                status = "CLUSTER_SCHEDULED" if self.worker else self.schedule
                instance = {"instance_number": number, "status": status, "logs": ""}
                found["instance_list"].append(instance)
                found["status"] = status
                if self.worker is not None:  # scheduling is asynchronous
                    threading.Thread(
                        target=self.worker.deploy, args=(found, instance), daemon=True
                    ).start()
            return {"message": "ok"}

        @api.delete("/api/service/{service_id}/instance/{number}")
        async def undeploy(service_id: str, number: int, request: Request) -> Any:
            user(request)
            found = service_of(service_id)
            found["instance_list"] = [
                i for i in found["instance_list"] if i["instance_number"] != number
            ]
            if self.worker is not None:
                self.worker.undeploy(service_id, number)
            return {"message": "ok"}

        @api.delete("/api/service/{service_id}")
        async def delete_service(service_id: str, request: Request) -> Any:
            user(request)
            found = self.services.pop(service_id, None)
            if found is not None and self.worker is not None:
                for instance in found["instance_list"]:
                    self.worker.undeploy(service_id, instance["instance_number"])
            if found is None:
                raise HTTPException(500, "Job not deleted")
            app = self.apps.get(found["applicationID"])
            if app is not None:
                app["microservices"].remove(service_id)
            return {"message": "Job deleted"}

        return api

    def set_instance(self, service_id: str, **fields: Any) -> None:
        """What a cluster reports of an instance (its status, its log tail)."""
        instance = self.services[service_id]["instance_list"][0]
        instance.update(fields)

    def start(self) -> OakestraStandin:
        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}"
        if self.worker is not None:
            from tests.oakestra_worker import report_loop

            self._stop_reports = threading.Event()
            threading.Thread(
                target=report_loop,
                args=(self.services, self.worker, self._stop_reports),
                daemon=True,
            ).start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self.worker is not None:
            self._stop_reports.set()
            self.worker.close()

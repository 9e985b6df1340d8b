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

from typing import Any

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

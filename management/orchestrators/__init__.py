"""Orchestrator backends by name: built-ins plus the `flops.orchestrators` group.

A third-party backend is a class implementing `Orchestrator`, registered as
`[project.entry-points."flops.orchestrators"] mybackend = "pkg.module:Class"`.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from flops.errors import ConfigError
from flops_management.orchestrators.base import (
    ClusterSpec,
    Deployment,
    DeploymentSpec,
    LearnerSpec,
    LogLine,
    Orchestrator,
)
from flops_management.orchestrators.topology import (
    Capability,
    Component,
    ComponentState,
    ComponentStatus,
    Placement,
    Role,
    StoredPartitions,
    Unsupported,
)
from flops_management.settings import Settings

ENTRY_POINT_GROUP = "flops.orchestrators"

BUILTIN_ORCHESTRATORS: dict[str, str] = {
    "local": "flops_management.orchestrators.local:LocalOrchestrator",
    "docker": "flops_management.orchestrators.docker:DockerOrchestrator",
    "kubernetes": "flops_management.orchestrators.kubernetes:KubernetesOrchestrator",
    "oakestra": "flops_management.orchestrators.oakestra:OakestraOrchestrator",
}


@cache
def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def orchestrator_names() -> list[str]:
    return [
        *BUILTIN_ORCHESTRATORS,
        *sorted(set(_plugins()) - set(BUILTIN_ORCHESTRATORS)),
    ]


def check_orchestrator(name: str, *, serving: bool = False) -> None:
    """ConfigError for an unknown name, or when `serving` asks for inference
    servers from a backend that cannot run them."""
    cls = _orchestrator_class(name)
    if serving and Capability.INFERENCE_SERVERS not in cls.capabilities:
        servers = able()[Capability.INFERENCE_SERVERS]
        raise Unsupported(
            f"post_training.deploy_inference_server: the {name} orchestrator cannot "
            f"run inference servers (these can: {', '.join(servers)}).",
            hint="Drop the option and serve the inference image yourself.",
        )


def able() -> dict[Capability, list[str]]:
    """Which backends have each capability (to name in an Unsupported error)."""
    return {
        capability: [
            n
            for n in orchestrator_names()
            if capability in _orchestrator_class(n).capabilities
        ]
        for capability in Capability
    }


def _orchestrator_class(name: str) -> type[Orchestrator]:
    if name in BUILTIN_ORCHESTRATORS:
        module_name, _, attr = BUILTIN_ORCHESTRATORS[name].partition(":")
        cls: type[Orchestrator] = getattr(importlib.import_module(module_name), attr)
        return cls
    if name not in _plugins():
        raise ConfigError(
            f"Unknown orchestrator '{name}'. Known orchestrators: "
            f"{', '.join(orchestrator_names())}."
        )
    plugin: type[Orchestrator] = _plugins()[name].load()
    return plugin


def get_orchestrator(name: str, settings: Settings) -> Orchestrator:
    return _orchestrator_class(name)(settings)


__all__ = [
    "Capability",
    "ClusterSpec",
    "Component",
    "ComponentState",
    "ComponentStatus",
    "Deployment",
    "DeploymentSpec",
    "LearnerSpec",
    "LogLine",
    "Orchestrator",
    "Placement",
    "Role",
    "StoredPartitions",
    "Unsupported",
    "able",
    "check_orchestrator",
    "get_orchestrator",
    "orchestrator_names",
]

"""Manifests checked against the Kubernetes schemas FLOps targets: a wrong
field is a FlopsError naming the object and the field, before anything is sent,
not a job half-created on the cluster.

`kubernetes-validate` ships the schemas (strict: unknown fields are errors, as
the API server's strict field validation has it), so this works offline. It is
a development dependency (its schemas weigh about 100 MB): the tests validate
every manifest the builders make; a service installed without it skips the
check (the manifests are the same, they validated in CI).

Its own `validate()` reads the 1.5 MB definitions file on every call (about a
second); the validators here are built once per kind.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from typing import Any

from flops.errors import FlopsError
from flops_management.orchestrators.kubernetes_objects import TARGET_VERSION

log = logging.getLogger(__name__)


class ManifestError(FlopsError):
    """A manifest FLOps built does not fit the Kubernetes schema (a FLOps bug,
    or a setting with a value Kubernetes refuses)."""


def describe(manifest: dict[str, Any]) -> str:
    name = manifest.get("metadata", {}).get("name", "?")
    return f"{manifest.get('kind', '?')}/{name}"


@functools.cache
def available() -> bool:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        log.debug("kubernetes-validate is not installed: manifests are not checked")
        return False
    return True


@functools.cache
def _folder(version: str) -> str:
    from kubernetes_validate import utils

    # The newest schema not newer than the target, as kubernetes-validate picks.
    shipped = [v for v in utils.all_versions() if utils.major_minor(v) <= version]
    if not shipped:
        raise ManifestError(
            f"kubernetes-validate has no schema for Kubernetes {version}."
        )
    return f"kubernetes-json-schema/v{shipped[-1]}-local-strict"


@functools.cache
def _definitions(version: str) -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"{_folder(version)}/_definitions.json", version)


@functools.cache
def _validator(kind: str, api_version: str, version: str) -> Any:
    import jsonschema  # type: ignore[import-untyped]
    from kubernetes_validate import utils
    from referencing import Registry, Resource  # type: ignore[import-untyped]

    # rbac.authorization.k8s.io/v1 -> rbac-v1, as the schema files are named.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = f"{_folder(version)}/{kind.lower()}-{api}.json"
    try:
        schema = utils.schema_contents(path, version)
    except FileNotFoundError as err:
        raise ManifestError(
            f"No Kubernetes {version} schema for {kind} ({api_version})."
        ) from err
    registry = Resource.from_contents(_definitions(version)) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(manifest: dict[str, Any], version: str = TARGET_VERSION) -> None:
    """ManifestError when `manifest` does not fit Kubernetes `version`'s schema."""
    import jsonschema

    validator = _validator(manifest["kind"], manifest["apiVersion"], version)
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ManifestError(
            f"{describe(manifest)} does not validate against Kubernetes {version}: "
            f"{where}: {error.message}",
            hint="Check the FLOPS_KUBERNETES_* settings it was built from.",
        )


def validate_all(manifests: Iterable[dict[str, Any]]) -> None:
    """Each manifest validated, when kubernetes-validate is installed."""
    if not available():
        return
    for manifest in manifests:
        validate(manifest)

"""Submitting projects: validate what can be validated now, record, enqueue.

A submission whose config is wrong (rounds 0, an unknown strategy or key, a data
tag that does not exist) is answered with 422 at once, and recorded as a failed
project carrying that error, so it shows in `flops project list` like any other
outcome; no job runs for it. What depends on the repo (its flops.toml, contract,
dependencies) is checked by the pipeline and ends up in the project's `error` too.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from flops import strategies
from flops.config import ProjectConfig, parse_config
from flops.errors import (
    ConfigError,
    ConflictError,
    FlopsError,
    ForbiddenError,
    NotFoundError,
    SourceError,
)
from flops_management import datasets, limits
from flops_management.auth import Principal
from flops_management.models import Project, ProjectStatus, utcnow
from flops_management.orchestrators import check_orchestrator
from flops_management.pipeline import repo_url
from flops_management.pipeline.repo_url import RepoSource
from flops_management.pipeline.runner import JobRunner
from flops_management.settings import Settings
from flops_management.store import Store

# A rejected submission's error is about the config: short, but bounded anyway.
MAX_REJECTION_CHARS = 4000


def derive_name(source: RepoSource) -> str:
    """`https://host/team/MNIST_Demo.git` -> `mnist_demo`; a subdirectory wins."""
    where = source.subdirectory or source.location
    last = re.split(r"[/:]", where.rstrip("/"))[-1].removesuffix(".git").lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", last).strip("-._")[:63]
    return name or "project"


_ID_PREFIX = re.compile(r"^[0-9a-f]{1,32}$")


def resolve_id(store: Store, tenant: str, given: str) -> str:
    """The tenant's project id that `given` is (or uniquely begins); the short
    ids `flops project list` shows work everywhere a full one does."""
    if not _ID_PREFIX.match(given):
        raise NotFoundError(f"Project {given} not found.")
    found = store.project_ids(tenant, given, limit=6)
    if given in found or len(found) == 1:
        return given if given in found else found[0]
    if not found:
        raise NotFoundError(f"Project {given} not found.")
    shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
    raise ConflictError(
        f"'{given}' is the start of more than one project id ({shown}).",
        hint="Give more of the id.",
    )


def check_local_access(
    source: RepoSource, principal: Principal, settings: Settings
) -> None:
    """A path on the service's host is a file read of the service: admins only,
    and never FLOPS_HOME (other jobs' checkouts, the service's own state)."""
    if not source.local:
        return
    if not principal.admin:
        raise ForbiddenError(
            "Only admins may submit a path on the service's host.",
            hint="Submit the repository's https URL.",
        )
    home = settings.home.resolve()
    path = Path(source.location)
    if path == home or path.is_relative_to(home) or home.is_relative_to(path):
        raise ForbiddenError(
            f"{source.location} holds the service's own state ({home}); FLOps does "
            "not clone it."
        )


def _validate(
    settings: Settings, store: Store, tenant: str, body: dict[str, Any]
) -> ProjectConfig:
    config = parse_config(body)
    limits.check_config(config, settings)
    strategies.validate_strategy(config)
    check_orchestrator(
        config.orchestrator, serving=config.post_training.deploy_inference_server
    )
    datasets.check_tags(store, tenant, config.data_tags, config.placed_learners)
    return config


def _record_rejection(
    store: Store, tenant: str, source: RepoSource, body: dict[str, Any], err: FlopsError
) -> None:
    now = utcnow()
    name = body.get("name") if isinstance(body.get("name"), str) else None
    project = Project(
        id=uuid.uuid4().hex,
        tenant=tenant,
        name=name or derive_name(source),
        source=source.display,
        requested_config=limits.stored_body(
            {key: value for key, value in body.items() if key != "repo"}
        ),
        status=ProjectStatus.FAILED,
        error=limits.bounded(str(err), MAX_REJECTION_CHARS),
        started_at=now,
        finished_at=now,
    )
    store.create_project(project)
    store.append_event(project.id, "job_rejected", {"error": project.error})
    err.detail["project_id"] = project.id


def _source(raw: object) -> RepoSource:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(
            "Invalid project config: 'repo' is required (a git URL or path)."
        )
    try:
        return repo_url.parse(raw)
    except SourceError as err:
        # A bad location is a bad config: 422, and nothing of it is stored.
        raise ConfigError(
            f"Invalid project config: 'repo': {err.message}", hint=err.hint
        ) from None


def submit(
    settings: Settings,
    store: Store,
    runner: JobRunner,
    principal: Principal,
    body: dict[str, Any],
) -> Project:
    source = _source(body.get("repo"))
    check_local_access(source, principal, settings)
    limits.check_active_jobs(store, principal.tenant, settings)
    try:
        config = _validate(settings, store, principal.tenant, body)
    except ConfigError as err:
        _record_rejection(store, principal.tenant, source, body, err)
        raise
    project = Project(
        id=uuid.uuid4().hex,
        tenant=principal.tenant,
        name=config.name or derive_name(source),
        source=source.display,
        requested_config={key: value for key, value in body.items() if key != "repo"},
        credentials=source.credentials is not None,
    )
    store.create_project(project)
    store.append_event(project.id, "job_queued", {"source": source.display})
    runner.submit(project.id, source.credentials)
    return project

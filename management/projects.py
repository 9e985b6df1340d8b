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
from typing import Any

from flops import strategies
from flops.config import ProjectConfig, parse_config
from flops.errors import ConfigError, FlopsError
from flops_management import datasets
from flops_management.auth import Principal
from flops_management.models import Project, ProjectStatus, utcnow
from flops_management.orchestrators import check_orchestrator
from flops_management.pipeline import source
from flops_management.pipeline.runner import JobRunner
from flops_management.store import Store


def derive_name(repo: str) -> str:
    """`https://host/team/MNIST_Demo.git` -> `mnist_demo`; a subdirectory wins."""
    url, subdir = source.split_subdirectory(repo)
    last = (
        re.split(r"[/:]", (subdir or url).rstrip("/"))[-1].removesuffix(".git").lower()
    )
    name = re.sub(r"[^a-z0-9._-]+", "-", last).strip("-._")[:63]
    return name or "project"


def _validate(store: Store, tenant: str, body: dict[str, Any]) -> ProjectConfig:
    config = parse_config(body)
    strategies.validate_strategy(config)
    check_orchestrator(
        config.orchestrator, serving=config.post_training.deploy_inference_server
    )
    datasets.check_tags(store, tenant, config.data_tags, config.learners)
    return config


def _record_rejection(
    store: Store, tenant: str, repo: str, body: dict[str, Any], err: FlopsError
) -> None:
    now = utcnow()
    name = body.get("name") if isinstance(body.get("name"), str) else None
    project = Project(
        id=uuid.uuid4().hex,
        tenant=tenant,
        name=name or derive_name(repo),
        source=repo,
        requested_config={key: value for key, value in body.items() if key != "repo"},
        status=ProjectStatus.FAILED,
        error=str(err),
        started_at=now,
        finished_at=now,
    )
    store.create_project(project)
    store.append_event(project.id, "job_rejected", {"error": str(err)})
    err.detail["project_id"] = project.id


def submit(
    store: Store, runner: JobRunner, principal: Principal, body: dict[str, Any]
) -> Project:
    raw_repo = body.get("repo")
    if not isinstance(raw_repo, str) or not raw_repo.strip():
        raise ConfigError(
            "Invalid project config: 'repo' is required (a git URL or path)."
        )
    repo = source.normalise(raw_repo)
    try:
        config = _validate(store, principal.tenant, body)
    except ConfigError as err:
        _record_rejection(store, principal.tenant, repo, body, err)
        raise
    project = Project(
        id=uuid.uuid4().hex,
        tenant=principal.tenant,
        name=config.name or derive_name(repo),
        source=repo,
        requested_config={key: value for key, value in body.items() if key != "repo"},
    )
    store.create_project(project)
    store.append_event(project.id, "job_queued", {"source": repo})
    runner.submit(project.id)
    return project

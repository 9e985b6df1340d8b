"""Submitting projects: validate what can be validated now, record, enqueue.

A submission whose flags are wrong (rounds 0, an unknown strategy or key, a data
tag that does not exist) is rejected before anything is stored; what depends on
the repo (its flops.toml, its contract, its dependencies) is checked by the
pipeline and ends up in the project's `error`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flops import strategies
from flops.config import parse_config
from flops.errors import ConfigError
from flops_management import datasets
from flops_management.auth import Principal
from flops_management.models import Project
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


def submit(
    store: Store, runner: JobRunner, principal: Principal, body: dict[str, Any]
) -> Project:
    config = parse_config(body)
    if not config.repo:
        raise ConfigError(
            "Invalid project config: 'repo' is required (a git URL or path)."
        )
    strategies.validate_strategy(config)
    check_orchestrator(config.orchestrator)
    datasets.check_tags(store, principal.tenant, config.data_tags, config.learners)
    repo = source.normalise(config.repo)
    requested = {key: value for key, value in body.items() if key != "repo"}
    project = Project(
        id=uuid.uuid4().hex,
        tenant=principal.tenant,
        name=config.name or derive_name(repo),
        source=repo,
        requested_config=requested,
    )
    store.create_project(project)
    store.append_event(project.id, "job_queued", {"source": repo})
    runner.submit(project.id)
    return project

"""Bounds on what a tenant can make the service run or store.

Every limit is a setting (FLOPS_MAX_*); going over one is an error that names
the limit and the setting, never a silent truncation of what was asked for.
What the service stores from a tenant (errors, rejected bodies, actor output)
is cut to a stated size, with a marker saying so.
"""

from __future__ import annotations

import json
from typing import Any

from flops.config import ProjectConfig
from flops.errors import LimitError
from flops_management.settings import Settings
from flops_management.store import Store

TRUNCATED = "[... {count} more characters not stored]"
MAX_STORED_BODY_CHARS = 16 * 1024


def bounded(text: str, limit: int) -> str:
    """`text`, or its head and tail with a marker when longer than `limit`."""
    if len(text) <= limit:
        return text
    keep = max(limit - 60, 0)
    head, tail = text[: keep // 2], text[len(text) - keep // 2 :]
    return f"{head}\n{TRUNCATED.format(count=len(text) - 2 * (keep // 2))}\n{tail}"


def stored_body(body: dict[str, Any]) -> dict[str, Any]:
    """A rejected submission's body as it is kept: whole when small, else a note."""
    text = json.dumps(body, default=str)
    if len(text) <= MAX_STORED_BODY_CHARS:
        return body
    return {"not_stored": f"the request body had {len(text)} characters"}


def check_config(config: ProjectConfig, settings: Settings) -> None:
    """LimitError (422) when the config asks for more than this service runs."""
    problems = []
    if config.learners > settings.max_learners:
        problems.append(
            f"learners {config.learners} is over this service's limit of "
            f"{settings.max_learners} (FLOPS_MAX_LEARNERS)"
        )
    if config.rounds > settings.max_rounds:
        problems.append(
            f"rounds {config.rounds} is over this service's limit of "
            f"{settings.max_rounds} (FLOPS_MAX_ROUNDS)"
        )
    if settings.orchestrators and config.orchestrator not in settings.orchestrators:
        problems.append(
            f"orchestrator {config.orchestrator!r} is not enabled on this service, "
            f"which runs jobs on: {', '.join(settings.orchestrators)} "
            "(FLOPS_ORCHESTRATORS); submit with --orchestrator "
            f"{settings.orchestrators[0]}"
        )
    problems += placement_problems(config, settings)
    if problems:
        raise LimitError(
            "Invalid project config:\n" + "\n".join(f"- {p}" for p in problems)
        )


def placement_problems(config: ProjectConfig, settings: Settings) -> list[str]:
    """The clusters whose placement the operator does not allow (the config is
    the tenant's: it must not pin tenant code to any node it likes)."""
    problems = []
    for cluster in config.clusters:
        wanted = cluster.placement
        if wanted.node is not None and wanted.node not in settings.placement_nodes:
            problems.append(
                f"cluster {cluster.name}: placement.node {wanted.node!r} is not one "
                "this service allows (FLOPS_PLACEMENT_NODES: "
                f"{', '.join(settings.placement_nodes) or 'none'})"
            )
        allowed = settings.placement_clusters
        if wanted.cluster is not None and wanted.cluster not in allowed:
            problems.append(
                f"cluster {cluster.name}: placement.cluster {wanted.cluster!r} is not "
                "one this service allows (FLOPS_PLACEMENT_CLUSTERS: "
                f"{', '.join(allowed) or 'none'})"
            )
        keys = sorted(set(wanted.labels) - set(settings.placement_label_keys))
        if keys:
            problems.append(
                f"cluster {cluster.name}: placement.labels {', '.join(keys)} are "
                "not label keys this service allows (FLOPS_PLACEMENT_LABEL_KEYS: "
                f"{', '.join(settings.placement_label_keys) or 'none'})"
            )
    return problems


def check_active_jobs(store: Store, tenant: str, settings: Settings) -> None:
    """LimitError when the tenant already has the most queued and running jobs."""
    active = sum(1 for p in store.unfinished_projects() if p.tenant == tenant)
    if active >= settings.max_active_jobs_per_tenant:
        raise LimitError(
            f"You have {active} queued or running projects, this service's limit "
            f"per tenant (FLOPS_MAX_ACTIVE_JOBS_PER_TENANT="
            f"{settings.max_active_jobs_per_tenant}).",
            hint="Wait for one to finish, or cancel one: flops project cancel ID.",
        )


def check_partitions(partitions: int, settings: Settings) -> None:
    if partitions > settings.max_learners:
        raise LimitError(
            f"partitions {partitions} is over this service's limit of "
            f"{settings.max_learners} learners (FLOPS_MAX_LEARNERS)."
        )

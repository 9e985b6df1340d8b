"""Learner data on this host, for the backends whose actors run here (`local`,
`docker`): each learner's stored partitions are snapshotted into the job's
folder, which the learner reads (a process's path, a container's bind mount).

A backend whose learners run elsewhere stages data its own way (a volume the
project names, or the data owner's own machine for joined learners); nothing
outside the host backends assumes a host path for a learner's data.
"""

from __future__ import annotations

from pathlib import Path

from flops_management import datasets
from flops_management.orchestrators.base import DeploymentSpec, placed_learners
from flops_management.sandbox import sandbox_for
from flops_management.settings import Settings


def learner_folder(spec: DeploymentSpec, learner: str) -> Path:
    return spec.workdir / "learners" / learner / "data"


def stage_learner_data(settings: Settings, spec: DeploymentSpec) -> dict[str, Path]:
    """Each learner's data folder (`<tag>/*.parquet`), made readable to the
    tenant's identity and to nobody else's."""
    folders: dict[str, Path] = {}
    sandbox = sandbox_for(settings)
    for learner in placed_learners(spec.learners):
        folder = learner_folder(spec, learner.name)
        folder.mkdir(parents=True, exist_ok=True)
        if learner.data is not None:
            for tag in learner.data.tags:
                datasets.snapshot_partition(
                    settings, learner.data.tenant, tag, learner.data.index, folder / tag
                )
        sandbox.share(folder, spec.identity)
        folders[learner.name] = folder
    return folders

"""The stages that publish what training produced: the registered model and its
inference-server image (and server, when asked for)."""

from __future__ import annotations

from pathlib import Path

from flops_management import serving
from flops_management.images.inference import (
    InferenceImageRequest,
    InferenceImages,
    run_commands,
)
from flops_management.images.registry import ImageInfo
from flops_management.mlflow_access import READ, MlflowAccess
from flops_management.orchestrators import get_orchestrator
from flops_management.pipeline import tracking
from flops_management.pipeline.context import JobContext, StageResult

# The registered model version's tag that names its inference-server image.
INFERENCE_IMAGE_TAG = "flops.inference_image"

NO_MODEL = (
    "no model to {what}: a Flower app's model has no MLflow flavor FLOps knows; "
    "its final arrays are the run's 'final_arrays' artifact. Name a "
    "[tool.flops] model-export hook in its pyproject.toml to get a model (README, "
    "'Flower apps as they are')."
)


def register(ctx: JobContext) -> StageResult:
    if ctx.model_uri is None:
        ctx.log(NO_MODEL.format(what="register"))
        ctx.event("note", message=NO_MODEL.format(what="register"))
        return "skipped"
    assert ctx.mlflow_run_id is not None
    project = ctx.store.get_project(ctx.project_id)
    client = tracking.Tracking(ctx.settings.tracking_uri)
    assert project.mlflow is not None and project.mlflow.experiment_id is not None
    client.check_job_model(
        ctx.model_uri, project.mlflow.experiment_id, ctx.mlflow_run_id
    )
    name = tracking.model_name(project.tenant, project.name)
    access = MlflowAccess(ctx.settings, ctx.store)
    access.claim("registered_model", name, project.tenant, client.model_exists(name))
    version = client.register(
        ctx.model_uri,
        name,
        tags={
            "flops.project_id": project.id,
            "flops.commit": str(project.commit),
            "flops.source": project.source,
        },
    )
    access.grant(access.tenant_user(project.tenant), "registered_model", name, READ)
    ctx.log(
        f"registered {ctx.model_uri} as {name} version {version} (@{tracking.CHAMPION})"
    )
    info = project.mlflow.model_copy(
        update={
            "model_name": name,
            "model_version": version,
            "model_uri": ctx.model_uri,
        }
    )
    ctx.store.update_project(ctx.project_id, mlflow=info)
    ctx.event(
        "model_registered",
        model_name=name,
        model_version=version,
        alias=tracking.CHAMPION,
    )
    return None


def inference_image(ctx: JobContext) -> StageResult:
    """The inference image (asked for, or needed to deploy on a container
    backend), then the inference server when `deploy_inference_server` is set."""
    config = ctx.require_config()
    post = config.post_training
    orchestrator = get_orchestrator(config.orchestrator, ctx.settings)
    build = post.build_inference_image or (
        post.deploy_inference_server and orchestrator.needs_image
    )
    if not (build or post.deploy_inference_server):
        ctx.log("no inference image requested (post_training.build_inference_image)")
        return "skipped"
    project = ctx.store.get_project(ctx.project_id)
    if project.mlflow is None or project.mlflow.model_version is None:
        ctx.log(NO_MODEL.format(what="serve"))
        return "skipped"
    name, version = str(project.mlflow.model_name), project.mlflow.model_version
    client = tracking.Tracking(ctx.settings.tracking_uri)
    model_dir = client.download_model(name, version, ctx.workspace.root / "model")
    image, skipped = (
        _build_inference_image(ctx, name, version, model_dir)
        if build
        else (None, False)
    )
    if post.deploy_inference_server:
        server = serving.deploy(
            ctx.settings,
            ctx.store,
            ctx.store.get_project(ctx.project_id),
            config.orchestrator,
            model_uri=f"models:/{name}/{version}",
            model_dir=model_dir,
            workdir=ctx.workspace.root,
            environment=ctx.environment,
            image=image,
            port=post.inference_port,
            log=ctx.log,
            identity=ctx.identity,
        )
        ctx.event(
            "inference_server_ready",
            url=server.url,
            orchestrator=server.orchestrator,
            image=server.image,
        )
        return None
    return "skipped" if skipped else None


def _build_inference_image(
    ctx: JobContext, name: str, version: str, model_dir: Path
) -> tuple[ImageInfo, bool]:
    """Build (or find) the image; tag the model version with it: (info, skipped)."""
    config = ctx.require_config()
    images = InferenceImages(ctx.settings, ctx.image_log)
    info, skipped = images.ensure(
        InferenceImageRequest(
            tenant=ctx.project.tenant,
            project=ctx.project.name,
            model_name=name,
            model_version=version,
            model_dir=model_dir,
            platforms=list(config.platforms),
            identity=ctx.identity,
        )
    )
    tracking.Tracking(ctx.settings.tracking_uri).tag_version(
        name, version, INFERENCE_IMAGE_TAG, info.pinned
    )
    run = run_commands(info.pinned, images.parts.registry.tls_verify)
    project = ctx.store.get_project(ctx.project_id)
    ctx.store.update_project(
        ctx.project_id,
        images={**project.images, "inference": {**info.as_dict(), "run": run}},
    )
    ctx.log(f"inference image {info.pinned}; serve it with: {run['podman']}")
    ctx.event(
        "inference_image_ready",
        image=info.pinned,
        platforms=info.platforms,
        skipped=skipped,
        run=run["podman"],
    )
    return info, skipped

"""The pipeline's stages, in order. Each takes the JobContext and either returns
(succeeded), returns "skipped", or raises a FlopsError saying what went wrong."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import flwr

from flops import flower_repo, strategies
from flops.app import run_settings as keys
from flops.config import ProjectConfig, loads_toml, merge_configs, parse_config
from flops.contract import check_repo
from flops.errors import ConfigError
from flops.repo_files import RepoRoot
from flops_management import datasets, limits
from flops_management.images.fl_actor import ActorImageRequest, FlActorImages
from flops_management.mlflow_access import (
    EDIT,
    READ,
    MlflowAccess,
    MlflowCredentials,
    job_username,
)
from flops_management.models import MlflowInfo
from flops_management.orchestrators import (
    ClusterSpec,
    Deployment,
    DeploymentSpec,
    LearnerSpec,
    Placement,
    StoredPartitions,
    able,
    check_orchestrator,
    get_orchestrator,
)
from flops_management.pipeline import augment as augment_mod
from flops_management.pipeline import flower_runs, repo_url, source, tracking
from flops_management.pipeline.context import JobContext, StageResult
from flops_management.pipeline.environment import EnvironmentBuilder, smoke_test
from flops_management.pipeline.follow import RunFollower
from flops_management.pipeline.joined import JoinedLearners
from flops_management.pipeline.publish import inference_image, register
from flops_management.pipeline.run_outcome import RunOutcome
from flops_management.pipeline.runtime_environment import RuntimeEnvironments
from flops_management.pipeline.smoke_cache import SmokeCache
from flops_management.sandbox import sandbox_for

REPO_CONFIG_FILE = "flops.toml"
# Lines of the environment build worth showing while a user follows the job.
BUILD_PROGRESS = re.compile(
    r"^\s*(creating environment|Resolved|Prepared|Installed|Bytecode|built environment)"
)


def clone(ctx: JobContext) -> StageResult:
    repo = repo_url.parse(ctx.project.source)
    repo = dataclasses.replace(repo, credentials=ctx.credentials)
    sha, subdir = source.clone(
        repo,
        ctx.project.requested_config.get("ref"),
        ctx.workspace.checkout,
        ctx.log,
        ca_bundle=ctx.settings.ca_bundle,
    )
    ctx.credentials = None  # used: not kept for the rest of the job
    ctx.repo_dir = ctx.workspace.checkout / subdir if subdir else ctx.workspace.checkout
    # Read by the tenant's sandboxed code (smoke test, actors), never written.
    sandbox_for(ctx.settings).share(ctx.workspace.checkout, ctx.identity)
    ctx.store.update_project(ctx.project_id, commit=sha)
    ctx.event("commit_resolved", commit=sha)
    return None


def check(ctx: JobContext) -> StageResult:
    repo = ctx.repo
    ctx.report = check_repo(repo)
    for note in ctx.report.notes:
        ctx.log(f"note: {note}")
    layers = []
    root = RepoRoot(repo)
    if root.is_file(REPO_CONFIG_FILE):
        text = root.read_text(REPO_CONFIG_FILE)
        layers.append(loads_toml(text, f"the repo's {REPO_CONFIG_FILE}"))
        ctx.log(f"using defaults from the repo's {REPO_CONFIG_FILE}")
    raw = merge_configs(*layers, ctx.project.requested_config)
    config = parse_config(raw, f"the repo's {REPO_CONFIG_FILE} and the submission")
    config = _with_flower_app(ctx, config, rounds_given="rounds" in raw)
    strategies.validate_strategy(config)
    limits.check_config(config, ctx.settings)  # the repo's flops.toml counts too
    check_orchestrator(
        config.orchestrator, serving=config.post_training.deploy_inference_server
    )
    datasets.check_tags(
        ctx.store, ctx.project.tenant, config.data_tags, config.placed_learners
    )
    ctx.config = config
    ctx.store.update_project(ctx.project_id, config=config.model_dump(mode="json"))
    deps = ctx.report.dependencies
    ctx.log(
        f"dependencies from {deps.source}: {', '.join(deps.requirements) or 'none'}"
    )
    return None


def _with_flower_app(
    ctx: JobContext, config: ProjectConfig, rounds_given: bool
) -> ProjectConfig:
    """The config as it applies to a Flower app, or a ConfigError for app
    settings on a contract repo. `rounds`, when given, sets the app's
    `num-server-rounds`; else the app's value is the job's rounds."""
    assert ctx.report is not None
    app = ctx.report.flower_app
    if app is None:
        if config.app_config:
            raise ConfigError(
                "app_config sets a Flower app's [tool.flwr.app.config] values, and "
                "this repo is not a Flower app (no [tool.flwr.app] in pyproject.toml)"
            )
        return config
    if config.hierarchical:
        raise ConfigError(
            "mode 'hierarchical' runs the project's strategy at every tier, and a "
            "Flower app runs its own ServerApp; train this app in mode 'classic'"
        )
    key = flower_repo.ROUNDS_KEY
    if rounds_given and key in app.config and key not in config.app_config:
        config = config.model_copy(
            update={"app_config": {**config.app_config, key: config.rounds}}
        )
    merged = flower_repo.merged_config(app, config.app_config)
    rounds = merged.get(key)
    if isinstance(rounds, int) and not isinstance(rounds, bool) and rounds >= 1:
        ctx.log(f"rounds: {rounds}, the app's {key}")
        config = config.model_copy(update={"rounds": rounds})
    if config.strategy != "fedavg" or config.strategy_params:
        ctx.log(
            "note: strategy and strategy_params are not used: a Flower app runs "
            "its own strategy (set its run config through app_config)"
        )
    return config


def augment(ctx: JobContext) -> StageResult:
    config = ctx.require_config()
    assert ctx.report is not None
    run_config = {
        keys.CONFIG: config.model_dump_json(exclude_none=True),
        keys.PROJECT_NAME: ctx.project.name,
        keys.REQUIREMENTS: json.dumps(list(ctx.report.dependencies.requirements)),
        keys.POLL_INTERVAL: ctx.settings.poll_interval,
        keys.CONNECT_TIMEOUT: ctx.settings.learner_connect_timeout,
    }
    app = ctx.report.flower_app
    written = augment_mod.write_app(
        ctx.workspace.app,
        ctx.project.name,
        run_config,
        app,
        flower_repo.merged_config(app, config.app_config) if app else None,
    )
    for path in written:
        ctx.log(f"wrote {path.relative_to(ctx.workspace.root)}")
    return None


def build(ctx: JobContext) -> StageResult:
    config = ctx.require_config()
    if get_orchestrator(config.orchestrator, ctx.settings).needs_image:
        return _build_image(ctx)
    assert ctx.report is not None
    builder = EnvironmentBuilder(ctx.settings, ctx.project.tenant, ctx.identity)

    def log(line: str) -> None:
        ctx.log(line)
        if BUILD_PROGRESS.match(line):  # the installer's summary lines, live
            ctx.event("build_progress", line=line.strip())

    ctx.runtime_environment = RuntimeEnvironments(ctx.settings).ensure(log)
    env, reused = builder.ensure(ctx.report.dependencies, log)
    ctx.environment = env
    requirements = list(ctx.report.dependencies.requirements)
    cache = SmokeCache(ctx.settings, ctx.project.tenant)
    key = cache.key(
        ctx.repo, env, config.model_flavor, requirements, ctx.report.flower_app
    )
    result = cache.get(key)
    if result is not None:
        ctx.log("smoke test: passed before with these files in this environment")
    else:
        result = smoke_test(
            ctx.settings,
            ctx.identity,
            env,
            ctx.repo,
            config.model_flavor,
            requirements,
            timeout=600,
            flower_app=ctx.report.flower_app,
        )
        cache.put(key, result)
    if ctx.report.flower_app is not None:
        ctx.log("smoke test: the app's ServerApp and ClientApp import in its env")
    else:
        ctx.log(
            f"smoke test: ModelManager() gives {result.arrays} arrays "
            f"({result.parameter_bytes} bytes), flavor {result.flavor}; the initial "
            "model saves with that flavor"
        )
    for note in result.notes:
        ctx.log(f"note: {note}")
        ctx.event("note", message=note)
    ctx.event(
        "environment_ready",
        path=str(env),
        runtime=str(ctx.runtime_environment),
        reused=reused,
        **result.model_dump(exclude={"notes"}),
    )
    return None


def _build_image(ctx: JobContext) -> StageResult:
    config = ctx.require_config()
    assert ctx.report is not None
    project = ctx.store.get_project(ctx.project_id)
    request = ActorImageRequest(
        tenant=project.tenant,
        project=project.name,
        commit=str(project.commit),
        source=project.source,
        repo_dir=ctx.repo,
        dependencies=ctx.report.dependencies,
        platforms=list(config.platforms),
        identity=ctx.identity,
    )
    info, skipped = FlActorImages(ctx.settings, ctx.image_log).ensure(request)
    ctx.image = info
    ctx.store.update_project(
        ctx.project_id, images={**project.images, "fl_actor": info.as_dict()}
    )
    ctx.event(
        "image_ready",
        image=info.pinned,
        platforms=info.platforms,
        skipped=skipped,
    )
    return "skipped" if skipped else None


def _job_user(ctx: JobContext) -> MlflowCredentials:
    """The aggregator's MLflow user: this job's experiment, nothing else."""
    credentials = MlflowAccess(ctx.settings, ctx.store).create_job_user(ctx.project_id)
    ctx.mlflow_job_user = True
    return credentials


def schedule(ctx: JobContext) -> StageResult:
    config = ctx.require_config()
    app = ctx.report.flower_app if ctx.report is not None else None
    orchestrator = get_orchestrator(config.orchestrator, ctx.settings)
    homes = flower_runs.learner_clusters(config)
    learners = [
        LearnerSpec(
            name=f"learner-{index}",
            data=StoredPartitions(ctx.project.tenant, tuple(config.data_tags), index),
            placement=(
                flower_runs.placement(homes[index].placement) if homes else Placement()
            ),
            cluster=homes[index].name if homes else None,
        )
        for index in range(config.placed_learners)
    ] + [
        # Named by their owners when they join; their data stays with them.
        LearnerSpec(name=f"joined-{index}", data=None, placement=Placement.joined())
        for index in range(config.joined_learners)
    ]
    spec = DeploymentSpec(
        job_id=ctx.project_id,
        workdir=ctx.workspace.root,
        repo_dir=ctx.repo,
        learners=tuple(learners),
        resources=config.resources,
        environment=ctx.environment,
        runtime_environment=ctx.runtime_environment,
        image=ctx.image.reference if ctx.image is not None else None,
        poll_interval=ctx.settings.poll_interval,
        identity=ctx.identity,
        aggregator_env=_job_user(ctx).as_env(),
        flower_app=(app.serverapp, app.clientapp) if app is not None else None,
        clusters=tuple(
            ClusterSpec(cluster.name, flower_runs.placement(cluster.placement))
            for cluster in config.clusters
        ),
    )
    orchestrator.check(spec, able())
    for note in orchestrator.notes(spec):
        ctx.log(note)
        ctx.event("note", message=note)
    ctx.deployment = orchestrator.submit(spec)
    ctx.store.update_project(
        ctx.project_id,
        runtime={
            "orchestrator": config.orchestrator,
            **ctx.deployment.runtime_info(),
            **_joining(spec, ctx.deployment),
        },
    )
    if ctx.deployment.fleet_address:
        ctx.log(
            f"Joined learners dial {ctx.deployment.fleet_address}; "
            f"{config.joined_learners} of {config.learners} learners join"
        )
    JoinedLearners(ctx).sync(force=True)
    ctx.log(
        f"SuperLink at {ctx.deployment.control_address}; {config.learners} learners"
    )
    ctx.event(
        "scheduled", superlink=ctx.deployment.control_address, learners=config.learners
    )
    return None


def _joining(spec: DeploymentSpec, deployment: Deployment) -> dict[str, Any]:
    """What a joined learner's assignment tells its device (enrolment.py): the
    Fleet front, and what its learner runs from (the image, or this host's
    environments for a device that shares its file system)."""
    if deployment.fleet_address is None:
        return {}
    return {
        "fleet_address": deployment.fleet_address,
        "image": spec.image,
        "environment": str(spec.environment) if spec.environment else None,
        "runtime_environment": (
            str(spec.runtime_environment) if spec.runtime_environment else None
        ),
        "repo_dir": str(spec.repo_dir),
        "flower_clientapp": spec.flower_app[1] if spec.flower_app else None,
    }


def train(ctx: JobContext) -> StageResult:
    config = ctx.require_config()
    assert ctx.deployment is not None
    commit = str(ctx.store.get_project(ctx.project_id).commit)
    client = tracking.Tracking(ctx.settings.tracking_uri)
    client.check_reachable()
    access = MlflowAccess(ctx.settings, ctx.store)
    name = tracking.experiment_name(ctx.project.tenant, ctx.project.name)
    experiment_id = client.experiment_id(name)
    access.claim(
        "experiment", name, ctx.project.tenant, exists=experiment_id is not None
    )
    experiment_id = experiment_id or client.create_experiment(name)
    # The tenant reads its experiments; the job's aggregator writes this one only.
    access.grant(
        access.tenant_user(ctx.project.tenant), "experiment", experiment_id, READ
    )
    access.grant(job_username(ctx.project_id), "experiment", experiment_id, EDIT)
    run_id = client.start_run(
        experiment_id,
        run_name=f"{ctx.project.name}-{ctx.project_id[:8]}",
        params={
            **tracking.flatten(config.model_dump(mode="json", exclude_none=True)),
            "commit": commit,
            "flwr_version": flwr.__version__,
        },
        tags={
            "flops.project_id": ctx.project_id,
            "flops.tenant": ctx.project.tenant,
            "mlflow.source.name": ctx.project.source,
            "mlflow.source.git.commit": commit,
        },
    )
    ctx.mlflow_run_id = run_id
    info = MlflowInfo(
        tracking_uri=ctx.settings.tracking_uri,
        experiment_id=experiment_id,
        run_id=run_id,
    )
    ctx.store.update_project(ctx.project_id, mlflow=info)
    runs = flower_runs.JobRuns(
        ctx.settings.actor_tracking_uri,
        experiment_id,
        run_id,
        ctx.workspace.app,
        ctx.workspace.flwr_cli,
    )
    # Clusters first: the root's first message finds their aggregators ready.
    flower_runs.start_cluster_runs(
        runs, ctx.deployment, client, ctx.mlflow_cluster_runs
    )
    ctx.flower_run_id = flower_runs.start_root_run(runs, ctx.deployment)
    ctx.log(f"Flower run {ctx.flower_run_id} started; MLflow run {run_id}")
    ctx.event(
        "flower_run_started", flower_run_id=ctx.flower_run_id, mlflow_run_id=run_id
    )
    outcome = None
    if ctx.deployment.lossy_logs:
        outcome = RunOutcome(
            ctx.deployment,
            int(ctx.flower_run_id),
            ctx.settings.tracking_uri,
            experiment_id,
            run_id,
        )
    follower = RunFollower(ctx, config, outcome)
    app = ctx.report.flower_app if ctx.report is not None else None
    ctx.model_uri = follower.follow(
        model_expected=app is None or app.model_export is not None
    )
    return None


STAGE_FUNCTIONS: dict[str, Callable[[JobContext], StageResult]] = {
    "clone": clone,
    "check": check,
    "augment": augment,
    "build": build,
    "schedule": schedule,
    "train": train,
    "register": register,
    "inference_image": inference_image,
}

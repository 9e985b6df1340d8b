"""Running jobs: stages in order, each recorded; cancel; recovery after a restart.

Jobs run on a small thread pool inside the service. A job that was running when
the service died cannot be resumed half-way through a Flower run, so on start-up
it is marked failed with that reason and whatever it left running is stopped;
queued jobs simply start.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flops.errors import ConflictError, FlopsError, JobCancelledError
from flops_management.limits import bounded
from flops_management.mlflow_access import MlflowAccess
from flops_management.models import ProjectStatus, StageStatus, utcnow
from flops_management.orchestrators import get_orchestrator
from flops_management.pipeline.context import CancelSignal, JobContext, Workspace
from flops_management.pipeline.repo_url import RepoCredentials
from flops_management.pipeline.stages import STAGE_FUNCTIONS
from flops_management.pipeline.tracking import Tracking
from flops_management.sandbox import sandbox_for
from flops_management.settings import Settings
from flops_management.store import Store

logger = logging.getLogger(__name__)

SHUTDOWN_REASON = (
    "The management service stopped while this job was running; submit it again."
)
RESTART_REASON = (
    "The management service restarted while this job was running; submit it again."
)
CREDENTIALS_LOST = (
    "The management service restarted before this job cloned its repository; the "
    "credentials in its URL are kept in memory only. Submit it again."
)


def _run_stage(ctx: JobContext, name: str) -> None:
    record = ctx.store.get_project(ctx.project_id).stage(name)
    record.status = StageStatus.RUNNING
    record.started_at = utcnow()
    ctx.store.update_stage(ctx.project_id, record)
    progress = ctx.store.get_project(ctx.project_id).progress
    ctx.store.update_project(
        ctx.project_id, progress=progress.model_copy(update={"stage": name})
    )
    ctx.event("stage_started", stage=name)
    started = time.monotonic()
    try:
        result = STAGE_FUNCTIONS[name](ctx)
    except BaseException as exc:
        record.status = (
            StageStatus.CANCELLED
            if isinstance(exc, JobCancelledError)
            else StageStatus.FAILED
        )
        if isinstance(exc, FlopsError):
            ctx.log(f"error: {exc}")
        else:
            ctx.log(f"internal error: {type(exc).__name__}: {exc}")
        record.finished_at = utcnow()
        record.log = ctx.take_log()
        ctx.store.update_stage(ctx.project_id, record)
        error = bounded(str(exc), ctx.settings.max_error_chars)
        ctx.event(f"stage_{record.status.value}", stage=name, error=error)
        raise
    record.status = (
        StageStatus.SKIPPED if result == "skipped" else StageStatus.SUCCEEDED
    )
    record.finished_at = utcnow()
    record.log = ctx.take_log()
    ctx.store.update_stage(ctx.project_id, record)
    ctx.event(
        f"stage_{record.status.value}",
        stage=name,
        seconds=round(time.monotonic() - started, 2),
    )


def _teardown(ctx: JobContext, status: ProjectStatus) -> None:
    if ctx.deployment is not None:
        try:
            ctx.deployment.cancel()
        except Exception:  # teardown must not hide the job's own outcome
            logger.exception("Stopping the deployment of %s failed", ctx.project_id)
    if ctx.mlflow_job_user:
        try:
            MlflowAccess(ctx.settings, ctx.store).delete_job_user(ctx.project_id)
        except Exception:
            logger.exception("Removing the MLflow user of %s failed", ctx.project_id)
    if ctx.mlflow_run_id is not None:
        mlflow_status = {
            ProjectStatus.SUCCEEDED: "FINISHED",
            ProjectStatus.CANCELLED: "KILLED",
        }.get(status, "FAILED")
        try:
            client = Tracking(ctx.settings.tracking_uri)
            client.finish_run(ctx.mlflow_run_id, mlflow_status)
            # A cluster that did not reach the end (lost, or the job's failure)
            # left its run open; those that did closed theirs as FINISHED.
            for run_id in ctx.mlflow_cluster_runs.values():
                client.finish_run_if_running(run_id, mlflow_status)
        except Exception:
            logger.exception("Could not close MLflow run %s", ctx.mlflow_run_id)


def run_job(
    settings: Settings,
    store: Store,
    project_id: str,
    cancel_event: CancelSignal,
    credentials: RepoCredentials | None = None,
) -> ProjectStatus:
    project = store.get_project(project_id)
    if project.status.finished:
        return project.status
    workspace = Workspace(settings.jobs_dir / project_id)
    workspace.root.mkdir(parents=True, exist_ok=True)
    identity = sandbox_for(settings).identity(store.tenant_index(project.tenant))
    ctx = JobContext(
        project,
        settings,
        store,
        workspace,
        cancel_event,
        identity=identity,
        credentials=credentials,
    )
    if project.cancel_requested:
        cancel_event.trigger()
    store.update_project(project_id, status=ProjectStatus.RUNNING, started_at=utcnow())
    store.append_event(project_id, "job_started", {"workspace": str(workspace.root)})
    status, error = ProjectStatus.SUCCEEDED, None
    try:
        for name in STAGE_FUNCTIONS:
            ctx.check_cancelled()
            _run_stage(ctx, name)
    except JobCancelledError as exc:
        status, error = ProjectStatus.CANCELLED, exc.message
    except FlopsError as exc:
        status, error = ProjectStatus.FAILED, str(exc)
    except Exception as exc:
        logger.exception("Job %s failed", project_id)
        status, error = (
            ProjectStatus.FAILED,
            f"Internal error: {type(exc).__name__}: {exc}",
        )
    finally:
        _teardown(ctx, status)
    if error is not None:
        error = bounded(error, settings.max_error_chars)
    store.update_project(
        project_id,
        status=status,
        error=error,
        finished_at=utcnow(),
        runtime={},
    )
    store.append_event(
        project_id, f"job_{status.value}", {"error": error} if error else {}
    )
    return status


class JobRunner:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_jobs, thread_name_prefix="flops-job"
        )
        self._cancel: dict[str, CancelSignal] = {}
        self._lock = threading.Lock()

    def submit(
        self, project_id: str, credentials: RepoCredentials | None = None
    ) -> None:
        with self._lock:
            event = self._cancel.setdefault(project_id, CancelSignal())
        self._pool.submit(self._run, project_id, event, credentials)

    def _run(
        self,
        project_id: str,
        event: CancelSignal,
        credentials: RepoCredentials | None,
    ) -> None:
        try:
            run_job(self.settings, self.store, project_id, event, credentials)
        except Exception:
            logger.exception("Job %s could not be run", project_id)
        finally:
            with self._lock:
                self._cancel.pop(project_id, None)

    def cancel(self, tenant: str, project_id: str) -> None:
        project = self.store.get_project(project_id, tenant)
        if project.status.finished:
            raise ConflictError(
                f"Project {project_id} already {project.status.value}; "
                "nothing to cancel."
            )
        self.store.update_project(project_id, cancel_requested=True)
        with self._lock:
            event = self._cancel.get(project_id)
        if event is not None:
            event.trigger()
        if project.status == ProjectStatus.QUEUED:
            # Not started yet: it will see the flag; say so now for the user.
            self.store.append_event(project_id, "cancel_requested", {})

    def recover(self) -> None:
        """Settle what the previous life of the service left unfinished."""
        for project in self.store.unfinished_projects():
            if project.status == ProjectStatus.RUNNING:
                runtime = project.runtime
                if runtime.get("orchestrator"):
                    try:
                        get_orchestrator(
                            runtime["orchestrator"], self.settings
                        ).cleanup(runtime)
                    except Exception:
                        logger.exception("Cleaning up after %s failed", project.id)
                for record in project.stages:
                    if record.status == StageStatus.RUNNING:
                        record.status = StageStatus.FAILED
                        record.finished_at = utcnow()
                        record.log += f"\n{RESTART_REASON}"
                        self.store.update_stage(project.id, record)
                self.store.update_project(
                    project.id,
                    status=ProjectStatus.FAILED,
                    error=RESTART_REASON,
                    finished_at=utcnow(),
                    runtime={},
                )
                self.store.append_event(
                    project.id, "job_failed", {"error": RESTART_REASON}
                )
                try:
                    MlflowAccess(self.settings, self.store).delete_job_user(project.id)
                except Exception:
                    logger.warning("Could not remove the MLflow user of %s", project.id)
                if project.mlflow and project.mlflow.run_id:
                    try:
                        Tracking(self.settings.tracking_uri).finish_run(
                            project.mlflow.run_id, "FAILED"
                        )
                    except Exception:
                        logger.warning("Could not close MLflow run of %s", project.id)
            elif project.credentials:
                self._fail_queued(project.id, CREDENTIALS_LOST)
            else:
                self.submit(project.id)

    def _fail_queued(self, project_id: str, reason: str) -> None:
        self.store.update_project(
            project_id,
            status=ProjectStatus.FAILED,
            error=reason,
            finished_at=utcnow(),
        )
        self.store.append_event(project_id, "job_failed", {"error": reason})

    def shutdown(self) -> None:
        """Stop running jobs (their processes too) and wait for them to settle."""
        with self._lock:
            events = list(self._cancel.items())
        for _project_id, event in events:
            event.stop_service(SHUTDOWN_REASON)
        self._pool.shutdown(wait=True, cancel_futures=True)

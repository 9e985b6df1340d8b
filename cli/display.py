"""How the CLI shows projects and events: pure functions from data to text lines.

The lines are Rich markup; every value that comes from elsewhere (names, sources,
errors, build output, image lists) is escaped, so a `[linux/amd64]` or a `[red]`
in a path is shown, not read as a tag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape

SHOWN_METRICS = ("eval_accuracy", "eval_loss", "round_seconds")
STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "white",
    "skipped": "dim",
    "pending": "dim",
}


def text(value: Any) -> str:
    """`_e` for the commands' own lines."""
    return _e(value)


def _e(value: Any) -> str:
    """Text from elsewhere (the API, a tenant's repo), shown as it is: Rich
    markup in it is escaped, never read."""
    return escape(str(value))


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return f"{delta.total_seconds():.1f}s"


def _metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for key in SHOWN_METRICS:
        value = metrics.get(key)
        if isinstance(value, int | float):
            parts.append(f"{key}={value:.4g}")
    return " ".join(parts)


def render_event(kind: str, event: dict[str, Any]) -> str | None:
    """One line for an event worth showing while following a job, else None."""
    data = event.get("data", {})
    stage = _e(data.get("stage", ""))
    if kind == "stage_started":
        return f"[bold]{stage:<9}[/bold] started"
    if kind.startswith("stage_") and stage:
        status = kind.removeprefix("stage_")
        style = STATUS_STYLE.get(status, "white")
        line = f"[bold]{stage:<9}[/bold] [{style}]{_e(status)}[/{style}]"
        if "seconds" in data:
            line += f" in {data['seconds']:.1f}s"
        if data.get("error"):
            line += f"\n{escape(str(data['error']))}"
        return line
    if kind == "commit_resolved":
        return f"          commit {_e(data['commit'])}"
    if kind == "environment_ready":
        how = "reused" if data.get("reused") else "built"
        return f"          environment {how}, flavor {_e(data.get('flavor'))}"
    if kind == "build_progress" or (kind == "build_log" and data.get("progress")):
        return f"          {escape(str(data.get('line')))}"
    if kind in {"image_ready", "inference_image_ready"}:
        what = "image" if kind == "image_ready" else "inference image"
        how = " (in the registry, build skipped)" if data.get("skipped") else ""
        platforms = ", ".join(data.get("platforms", []))
        return escape(f"          {what} {data.get('image')} [{platforms}]{how}")
    if kind == "inference_server_ready":
        return (
            f"          inference server {_e(data.get('url'))} "
            f"(POST {_e(data.get('url'))}/invocations)"
        )
    if kind == "flower_run_started":
        return f"          Flower run {_e(data.get('flower_run_id'))} started"
    if kind == "run_started":
        return f"          aggregator started ({_e(data.get('strategy'))})"
    if kind == "learner_connected":
        connected, needed = data.get("connected"), data.get("needed")
        return f"          learners connected: {_e(connected)}/{_e(needed)}"
    if kind == "round_finished":
        return (
            f"[bold]train    [/bold] round {_e(data['round'])}/{_e(data['rounds'])}  "
            f"{_metrics(data.get('metrics', {}))}"
        )
    if kind == "learner_failed":
        return (
            f"[red]          {_e(data.get('learner'))} failed: "
            f"{escape(str(data.get('reason')))}[/red]"
        )
    if kind == "learner_lost":
        return (
            f"[yellow]          {_e(data.get('learner'))} is gone "
            f"({_e(data.get('reason'))}); training goes on without it[/yellow]"
        )
    if kind == "learner_task_failed":
        return (
            f"[yellow]          {_e(data.get('learner'))}: its task process died "
            f"(code {_e(data.get('code'))})[/yellow]"
        )
    if kind in {"learner_enrolled", "learner_revoked", "node_refused"}:
        style = "white" if kind == "learner_enrolled" else "yellow"
        return f"[{style}]          {escape(str(data.get('message')))}[/{style}]"
    if kind == "learner_registered":
        return (
            f"          {_e(data.get('learner'))} (joined from "
            f"{_e(data.get('address'))}) registered with the SuperLink"
        )
    if kind in {"warning", "note"}:
        return f"[yellow]          {escape(str(data.get('message')))}[/yellow]"
    if kind == "model_registered":
        return (
            f"          registered {_e(data['model_name'])} "
            f"version {_e(data['model_version'])} "
            f"(@{_e(data['alias'])})"
        )
    return None


def project_lines(project: dict[str, Any]) -> list[str]:
    """A readable summary of one project."""
    status = project["status"]
    style = STATUS_STYLE.get(status, "white")
    lines = [
        f"[bold]{_e(project['name'])}[/bold]  {_e(project['id'])}",
        f"status   [{style}]{_e(status)}[/{style}]",
        f"source   {_e(project['source'])}",
    ]
    if project.get("commit"):
        lines.append(f"commit   {_e(project['commit'])}")
    progress = project.get("progress") or {}
    if progress.get("rounds"):
        lines.append(
            f"rounds   {_e(progress.get('round', 0))}/{_e(progress['rounds'])}  "
            f"{_metrics(progress.get('metrics', {}))}"
        )
    for learner, why in (progress.get("learners_lost") or {}).items():
        lines.append(f"[yellow]lost     {_e(learner)} ({_e(why)})[/yellow]")
    lines.append("stages")
    for stage in project.get("stages", []):
        s_style = STATUS_STYLE.get(stage["status"], "white")
        took = _seconds(stage.get("started_at"), stage.get("finished_at"))
        lines.append(
            f"  {_e(stage['name']):<9} [{s_style}]{_e(stage['status']):<9}[/{s_style}] "
            f"{took}"
        )
    mlflow = project.get("mlflow") or {}
    if mlflow.get("run_id"):
        lines.append(
            _e(
                f"mlflow   {mlflow['tracking_uri']}/#/experiments/"
                f"{mlflow['experiment_id']}/runs/{mlflow['run_id']}"
            )
        )
    if mlflow.get("model_name"):
        lines.append(
            _e(
                f"model    models:/{mlflow['model_name']}@champion "
                f"(version {mlflow['model_version']})"
            )
        )
    lines += _image_lines(project.get("images") or {})
    server = project.get("server")
    if server:
        s_style = STATUS_STYLE.get(server["status"], "white")
        lines.append(
            f"server   {_e(server['url'])} [{s_style}]{_e(server['status'])}"
            f"[/{s_style}] on {_e(server['orchestrator'])}"
            + (f" ({_e(server['reason'])})" if server.get("reason") else "")
        )
        if server["status"] == "running":
            lines.append(f"         POST {_e(server['url'])}/invocations")
    if project.get("error"):
        lines.append(f"[red]error    {escape(project['error'])}[/red]")
    return lines


def _image_lines(images: dict[str, Any]) -> list[str]:
    """Each image pinned by digest with its platforms; how to serve the model."""
    lines = ["images"] if images else []
    for role in ("fl_actor", "inference"):
        image = images.get(role)
        if not image:
            continue
        platforms = ", ".join(image.get("platforms", []))
        lines.append(escape(f"  {role:<9} {image['reference']} [{platforms}]"))
        for command in (image.get("run") or {}).values():
            lines.append(escape(f"            {command}"))
    return lines


def project_row(project: dict[str, Any]) -> list[str]:
    progress = project.get("progress") or {}
    where = progress.get("stage") or ""
    if progress.get("rounds") and where == "train":
        where += f" {progress.get('round', 0)}/{progress['rounds']}"
    return [
        _e(project["id"]),
        _e(project["name"]),
        _e(project["status"]),
        _e(where),
        _e(project["created_at"][:19].replace("T", " ")),
    ]

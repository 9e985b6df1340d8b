"""The inference-server image of a registered model version.

Base and packages as for the FL-actor image, resolved from the model's own
`requirements.txt` (the versions the user's code trained it with), with an
MLflow 3 `mlflow` pin served by `mlflow-skinny` at the same version: the scoring
server needs only that (MLflow 2's needs the full package). The tag names the
model version and the hash of its files, so an identical version is never
rebuilt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import flops
from flops.dependencies import check_requirement
from flops.errors import EnvironmentBuildError
from flops.repo_files import RepoRoot
from flops_management.images import containerfiles
from flops_management.images.fl_actor import repository
from flops_management.images.parts import ImageParts, deps_hash, runtime_hash
from flops_management.images.registry import ImageInfo
from flops_management.sandbox import Identity
from flops_management.settings import Settings

Log = Callable[[str], None]
SERVE_PORT = 8080
# mlflow.pyfunc needs pandas, which mlflow-skinny leaves out.
SERVER_REQUIREMENTS = ("pandas", "uvicorn")


@dataclass(frozen=True)
class InferenceImageRequest:
    tenant: str
    project: str
    model_name: str
    model_version: str
    model_dir: Path
    platforms: list[str]
    identity: Identity | None = None


def _scoring_mlflow(requirement: str) -> str:
    """`mlflow` as `mlflow-skinny` at the same version, from MLflow 3 on, whose
    skinny package has the (FastAPI) scoring server; MLflow 2's scoring server is
    Flask, which only the full package has, so a model saved by MLflow 2 keeps it.
    """
    req = Requirement(requirement)
    if canonicalize_name(req.name) != "mlflow":
        return requirement
    exact = [s.version for s in req.specifier if s.operator == "=="]
    if exact and Version(exact[0]).major < 3:
        return requirement
    return re.sub(r"^mlflow(?=[\s=<>!~;\[]|$)", "mlflow-skinny", requirement)


def model_requirements(model_dir: Path) -> list[str]:
    """The model's pip requirements, `mlflow` served by `mlflow-skinny`.

    The file was written by the job's aggregator, which ran the tenant's code:
    each line is checked like a repo's requirements (no options, no file of this
    host as a direct reference) before anything resolves it.
    """
    root = RepoRoot(model_dir)
    lines = (
        root.read_text("requirements.txt").splitlines()
        if root.is_file("requirements.txt")
        else []
    )
    requirements: list[str] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        checked = check_requirement(line, f"model requirements line {number}", problems)
        if checked is None:
            continue
        requirements.append(_scoring_mlflow(checked))
    if problems:
        raise EnvironmentBuildError(
            "The model's requirements cannot be installed:\n"
            + "\n".join(f"- {p}" for p in problems)
        )
    if not any(req.startswith("mlflow") for req in requirements):
        requirements.append("mlflow-skinny")
    return [*requirements, *SERVER_REQUIREMENTS]


def model_hash(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_commands(reference: str, tls_verify: bool) -> dict[str, str]:
    """How a user serves the image: Podman (told when the registry is plain
    HTTP) and Docker (which trusts a loopback registry by itself)."""
    ports = f"-p {SERVE_PORT}:{SERVE_PORT}"
    insecure = "" if tls_verify else " --tls-verify=false"
    return {
        "podman": f"podman run --rm{insecure} {ports} {reference}",
        "docker": f"docker run --rm {ports} {reference}",
    }


class InferenceImages:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.parts = ImageParts(settings, log)

    def ensure(self, request: InferenceImageRequest) -> tuple[ImageInfo, bool]:
        parts = self.parts
        pins = parts.resolve(
            request.platforms,
            model_requirements(request.model_dir),
            request.tenant,
            request.identity,
        )
        sites = {platform: {"site": found} for platform, found in pins.items()}
        deps = deps_hash(sites, self.settings.base_python)
        tag = (
            f"v{request.model_version}-m{model_hash(request.model_dir)[:12]}"
            f"-d{deps[:12]}-r{runtime_hash()[:8]}"
        )
        name = repository(request.tenant, request.project) + "-inference"
        reference = parts.registry.reference(name, tag)
        existing = parts.existing(reference, request.platforms)
        if existing is not None:
            return existing, True

        def render(
            platform: str, base: str, layers: dict[str, str], model: Path
        ) -> str:
            return containerfiles.render(
                containerfiles.INFERENCE,
                **layers,
                base=base,
                platform=platform,
                flops_version=flops.__version__,
                model=parts.relative(model),
                model_name=request.model_name,
                model_version=request.model_version,
                title=f"FLOps inference server: {request.model_name}",
            )

        return parts.build(reference, sites, request.model_dir, render), False

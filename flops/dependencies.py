"""The ML repo's dependencies: found, parsed, validated and hashed.

A repo declares them in `requirements.txt`, `pyproject.toml` ([project]
dependencies) or a conda `conda.yaml`/`conda.yml`, whose `pip:` section is what
FLOps installs. The first file found in that order is used; the others are named
in the notes so nobody wonders why their edit had no effect.
"""

from __future__ import annotations

import contextlib
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from flops.errors import ContractError
from flops.repo_files import RepoPathError, RepoRoot

DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml", "conda.yaml", "conda.yml")

# Direct references (`pkg @ URL`) the installer may fetch: from the network only,
# never a file of the host that installs them.
REMOTE_URL_SCHEMES = ("https://", "http://", "git+https://", "git+http://")

# Provided by the FLOps runtime itself; a repo written for Oakestra FLOps lists
# `flops-utils` so that it runs on a laptop, FLOps supplies its compatible copy.
PROVIDED_BY_RUNTIME = {"flops-utils"}


@dataclass(frozen=True)
class DependencySet:
    source: str
    requirements: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    # The interpreter a conda file asks for (`python=3.10.14` gives "3.10.14").
    python: str | None = None

    def digest(self) -> str:
        """Stable hash of the resolved-input requirement set (order-insensitive)."""
        canonical = "\n".join(sorted(_normalise(req) for req in self.requirements))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _normalise(spec: str) -> str:
    req = Requirement(spec)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    url = f" @ {req.url}" if req.url else ""
    return f"{canonicalize_name(req.name)}{extras}{req.specifier}{url}{marker}"


def check_requirement(spec: str, where: str, problems: list[str]) -> str | None:
    try:
        req = Requirement(spec)
    except InvalidRequirement as err:
        problems.append(f"{where}: '{spec}' is not a valid requirement ({err})")
        return None
    if req.url and not req.url.lower().startswith(REMOTE_URL_SCHEMES):
        problems.append(
            f"{where}: '{spec}' points at {req.url}; a direct reference must be an "
            "https URL (a file of the build host is never installed)"
        )
        return None
    if canonicalize_name(req.name) in PROVIDED_BY_RUNTIME:
        return None
    return spec


def _requirements_txt(
    rel: str, root: RepoRoot, problems: list[str], notes: list[str], seen: set[str]
) -> list[str]:
    if rel in seen:
        return []
    seen.add(rel)
    try:
        text = root.read_text(rel)
    except RepoPathError as err:
        problems.append(err.message)
        return []
    specs: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f"{rel} line {number}"
        if line.startswith(("-r ", "--requirement ", "-r\t")):
            include = (PurePosixPath(rel).parent / line.split(maxsplit=1)[1]).as_posix()
            try:
                target = root.relative(root.path(include))
            except RepoPathError:
                target = None
            if target is None or not root.is_file(target):
                problems.append(f"{where}: included file '{line}' is not in the repo")
                continue
            specs += _requirements_txt(target, root, problems, notes, seen)
        elif line.startswith("-"):
            notes.append(f"{where}: option '{line}' is ignored")
        elif (spec := check_requirement(line, where, problems)) is not None:
            specs.append(spec)
    return specs


def _pyproject(root: RepoRoot, problems: list[str]) -> list[str]:
    try:
        data = tomllib.loads(root.read_text("pyproject.toml"))
    except RepoPathError as err:
        problems.append(err.message)
        return []
    except tomllib.TOMLDecodeError as err:
        problems.append(f"pyproject.toml is not valid TOML: {err}")
        return []
    deps = data.get("project", {}).get("dependencies")
    if deps is None:
        problems.append("pyproject.toml has no [project] dependencies list")
        return []
    return [
        spec
        for spec in (
            check_requirement(str(d), "pyproject.toml", problems) for d in deps
        )
        if spec is not None
    ]


def conda_python(entries: list[Any]) -> str | None:
    """The version in a conda `python=3.10.14` (or `python==3.10`) entry."""
    for entry in entries:
        if isinstance(entry, str) and entry.replace(" ", "").startswith("python="):
            return entry.replace(" ", "").split("=")[-1] or None
    return None


def _conda(
    root: RepoRoot, name: str, problems: list[str], notes: list[str]
) -> list[str]:
    path = Path(name)
    try:
        data: Any = yaml.safe_load(root.read_text(name))
    except RepoPathError as err:
        problems.append(err.message)
        return []
    except yaml.YAMLError as err:
        problems.append(f"{path.name} is not valid YAML: {err}")
        return []
    deps = data.get("dependencies", []) if isinstance(data, dict) else None
    if not isinstance(deps, list):
        problems.append(f"{path.name} has no 'dependencies' list")
        return []
    specs: list[str] = []
    for entry in deps:
        if isinstance(entry, dict) and "pip" in entry:
            for spec in entry["pip"] or []:
                checked = check_requirement(
                    str(spec), f"{path.name} pip section", problems
                )
                if checked is not None:
                    specs.append(checked)
        elif isinstance(entry, str) and not entry.startswith(("python", "pip")):
            notes.append(
                f"{path.name}: conda package '{entry}' is ignored; FLOps installs the "
                "pip: section (list it there if the code needs it)"
            )
    return specs


def _declares_dependencies(root: RepoRoot) -> bool:
    """A pyproject.toml kept only for tool settings is not a dependency file."""
    try:
        data = tomllib.loads(root.read_text("pyproject.toml"))
    except (tomllib.TOMLDecodeError, RepoPathError):
        return True  # let the parser report the problem
    return "dependencies" in data.get("project", {})


def _present(root: RepoRoot, name: str) -> bool:
    """A dependency file is there (one that leaves the repo counts, to be refused)."""
    try:
        return root.path(name).is_file()
    except RepoPathError:
        return True


def find_dependency_file(repo: Path) -> Path | None:
    root = RepoRoot(repo)
    for name in DEPENDENCY_FILES:
        if _present(root, name) and (
            name != "pyproject.toml" or _declares_dependencies(root)
        ):
            return root.root / name
    return None


def read_dependencies(repo: Path) -> DependencySet:
    """Parse the repo's dependency file; ContractError lists every problem."""
    root = RepoRoot(repo)
    path = find_dependency_file(root.root)
    if path is None:
        raise ContractError(
            [
                "no dependency file: add requirements.txt, pyproject.toml with "
                "[project] dependencies, or conda.yaml with a pip: section"
            ]
        )
    problems: list[str] = []
    notes: list[str] = []
    python = None
    if path.name == "requirements.txt":
        specs = _requirements_txt(path.name, root, problems, notes, set())
    elif path.name == "pyproject.toml":
        specs = _pyproject(root, problems)
    else:
        specs = _conda(root, path.name, problems, notes)
        with contextlib.suppress(RepoPathError, yaml.YAMLError, AttributeError):
            data = yaml.safe_load(root.read_text(path.name))
            python = conda_python(list(data.get("dependencies") or []))
    if problems:
        raise ContractError(problems)
    others = [
        name
        for name in DEPENDENCY_FILES
        if name != path.name
        and root.is_file(name)
        and (name != "pyproject.toml" or _declares_dependencies(root))
    ]
    if others:
        notes.append(
            f"using {path.name}; also present and ignored: {', '.join(others)}"
        )
    return DependencySet(
        source=path.name, requirements=tuple(specs), notes=tuple(notes), python=python
    )

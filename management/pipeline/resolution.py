"""What goes into the user's environment, resolved, and why when it cannot be.

The user's environment holds the repo's requirements exactly as the repo pins
them, plus what the model worker needs that the repo does not name (NumPy,
pyarrow and `datasets` for `load_dataset()`, MLflow to save the model, the
flavor's saving extras), unpinned so that they bend to the repo's pins, not the
other way round. FLOps' own Flower runtime lives in another environment, so
nothing of it constrains the repo.

Some versions install together but break at import; their metadata cannot say
so, so known cases are rules (`COMPAT_RULES`) applied to the resolved set, each
named in the build log when it changes something.

When the set cannot be resolved, `diagnose` finds every pin at fault at once:
pins that install on no version of this Python, then pins whose removal lets
the rest resolve, each with the resolver's own account of who asked for what.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from flops.dependencies import DependencySet
from flops.errors import FlopsError
from flops.model_export import export_requirements

# The worker's own needs, as loose as they can be (see flops/worker/__main__.py).
WORKER_REQUIREMENTS = (
    "numpy",
    "pyarrow>=12",
    # 4.x made `dataset["col"]` a lazy Column; contract repos call `.reshape` on it.
    "datasets>=2.14,<4",
)
# Saving the model: the repo's own MLflow when it names one, else the skinny one.
MLFLOW_NAMES = {"mlflow", "mlflow-skinny"}
WORKER_MLFLOW = "mlflow-skinny"
# Bump when the rules or the worker's needs change: environments are keyed by it.
RESOLUTION_VERSION = "4"


def worker_mlflow() -> str:
    """The worker's MLflow, no newer than this service's own (the client of the
    tracking server the run logs to): a newer client may call routes that
    server lacks, and the saved model records the worker's version as its
    requirement, which must be one the index can install whole (a release
    half-published, `mlflow` ahead of `mlflow-tracing`, cannot be)."""
    try:
        return f"{WORKER_MLFLOW}<={importlib.metadata.version('mlflow')}"
    except importlib.metadata.PackageNotFoundError:
        return WORKER_MLFLOW


class ResolutionError(FlopsError):
    """The user's environment cannot be resolved; the message lists every pin."""

    http_status = 422


@dataclass(frozen=True)
class CompatRule:
    """When the resolved set has `when`, it also needs `require` (`why`).

    A rule that `adds` puts `require` into the set (a package the set lacks);
    otherwise `require` is a constraint: it bounds a package when the set has
    it and never brings one in (a constraint on `mlflow-skinny` must not install
    it beside a repo's own `mlflow` 2, whose files it would overwrite).
    """

    when: str
    require: str
    why: str
    adds: bool = False

    def applies(self, pins: dict[str, Version]) -> bool:
        req = Requirement(self.when)
        found = pins.get(canonicalize_name(req.name))
        return found is not None and req.specifier.contains(found, prereleases=True)

    def satisfied(self, pins: dict[str, Version]) -> bool:
        req = Requirement(self.require)
        found = pins.get(canonicalize_name(req.name))
        if found is None:
            return not self.adds
        return req.specifier.contains(found, prereleases=True)


COMPAT_RULES = (
    CompatRule(
        "numpy<2", "pyarrow<21", "pyarrow 21 and later refuse NumPy < 2 at import"
    ),
    CompatRule(
        "torch<2.3",
        "numpy<2",
        "torch before 2.3 was built against NumPy 1 and cannot run on NumPy 2",
    ),
    CompatRule(
        "mlflow<3",
        "setuptools<81",
        "MLflow 2 imports pkg_resources, which new environments no longer get "
        "and setuptools 81 and later no longer ship",
        adds=True,
    ),
    # The worker's MLflow must save the repo's framework: MLflow publishes the
    # oldest version each release supports (mlflow/ml_package_versions.py).
    CompatRule(
        "torch<2.1",
        "mlflow-skinny<3",
        "MLflow 3 supports torch 2.1 and later",
    ),
    CompatRule(
        "torch<2.2",
        "mlflow-skinny<3.7",
        "MLflow 3.9 and later save torch models with torch.export.Dim (torch "
        "2.2); 3.6 is the last release supporting torch 2.1",
    ),
    CompatRule(
        "tensorflow<2.18",
        "numpy<2",
        "TensorFlow before 2.18 was built against NumPy 1",
    ),
)


def _name(spec: str) -> str:
    return canonicalize_name(Requirement(spec).name)


def user_requirements(deps: DependencySet) -> list[str]:
    """The repo's requirements plus the worker's needs the repo does not name."""
    named = {_name(spec) for spec in deps.requirements}
    extra = [spec for spec in WORKER_REQUIREMENTS if _name(spec) not in named]
    if not named & MLFLOW_NAMES:
        extra.append(worker_mlflow())
    return [*deps.requirements, *extra, *export_requirements(deps.requirements)]


def versions(pins: list[str]) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for pin in pins:
        try:
            req = Requirement(pin)
        except ValueError:
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            try:
                found[canonicalize_name(req.name)] = Version(exact[0])
            except InvalidVersion:
                continue
    return found


class CompileFailed(Exception):
    """The resolver's refusal; `output` is what it said, `constraints` the
    compatibility constraints in force when it said it."""

    def __init__(self, output: str, constraints: tuple[str, ...] = ()) -> None:
        super().__init__(output)
        self.output = output
        self.constraints = constraints


# (requirements, constraints) -> pins
Compile = Callable[[list[str], list[str]], list[str]]


@dataclass
class Resolution:
    pins: list[str]
    notes: list[str] = field(default_factory=list)


def compiled_pins(output: str) -> list[str]:
    """The pins in `uv pip compile` output (no header, no annotations)."""
    return sorted(
        line.strip()
        for line in output.splitlines()
        if line.strip() and not line.startswith(("#", " ", "warning"))
    )


def resolve_user(deps: DependencySet, compile_: Compile, python: str) -> Resolution:
    """The user's environment resolved, or ResolutionError naming every pin at
    fault (`python` says where, for the message)."""
    wanted = user_requirements(deps)
    try:
        return resolve(wanted, compile_)
    except CompileFailed as err:
        raise diagnose(deps, wanted, compile_, python, err.constraints) from None


def resolve(requirements: list[str], compile_: Compile) -> Resolution:
    """The pinned set, with the compatibility rules applied (CompileFailed if the
    resolver refuses)."""
    constraints: list[str] = []
    notes: list[str] = []
    added_requirements: list[str] = []
    for _ in range(len(COMPAT_RULES) + 1):
        try:
            pins = compile_([*requirements, *added_requirements], constraints)
        except CompileFailed as err:
            raise CompileFailed(err.output, tuple(constraints)) from None
        found = versions(pins)
        added = [
            rule
            for rule in COMPAT_RULES
            if rule.applies(found) and not rule.satisfied(found)
        ]
        if not added:
            return Resolution(pins, notes)
        for rule in added:
            (added_requirements if rule.adds else constraints).append(rule.require)
            notes.append(
                f"{rule.when} is in the set: {rule.require} is used ({rule.why})"
            )
    raise CompileFailed("the compatibility rules did not converge", tuple(constraints))


def _reason(output: str, lines: int = 6) -> str:
    kept = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return " ".join(kept[-lines:])


def _unpinned(spec: str) -> str:
    req = Requirement(spec)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{req.name}{extras}{marker}"


def diagnose(
    deps: DependencySet,
    requirements: list[str],
    compile_: Compile,
    python: str,
    constraints: tuple[str, ...] = (),
) -> ResolutionError:
    """Every pin of the repo at fault, at once (see the module doc);
    `constraints` are the compatibility rules' bounds the refusal came under."""
    problems: list[str] = []
    alone_broken: set[str] = set()
    for spec in deps.requirements:
        try:
            compile_([spec], [])
        except CompileFailed as err:
            alone_broken.add(spec)
            problems.append(
                f"{spec}: does not install on Python {python} by itself "
                f"(the resolver says: {_reason(err.output)})"
            )
    # What cannot install at all is left out: the rest may still collide.
    current = [spec for spec in requirements if spec not in alone_broken]
    pinned = [
        spec
        for spec in deps.requirements
        if str(Requirement(spec).specifier) and spec not in alone_broken
    ]
    for _ in range(len(pinned) + 1):
        try:
            compile_(current, list(constraints))
            break
        except CompileFailed as err:
            failure = err.output
        culprit = None
        for spec in pinned:
            if spec not in current:
                continue
            trial = [_unpinned(s) if s == spec else s for s in current]
            try:
                chosen = versions(compile_(trial, list(constraints))).get(_name(spec))
            except CompileFailed:
                continue
            culprit = spec
            problems.append(
                f"{spec}: collides with another requirement"
                + (
                    f" (without the pin, {_name(spec)} {chosen} is chosen)"
                    if chosen
                    else ""
                )
                + f"; the resolver says: {_reason(failure)}"
            )
            break
        if culprit is None:
            problems.append(f"the requirements do not resolve: {_reason(failure, 12)}")
            break
        current = [_unpinned(s) if s == culprit else s for s in current]
    if not problems:
        problems.append("the resolver refused the set, then accepted it on retry")
    return ResolutionError(
        f"The repo's requirements ({deps.source}) cannot be installed on Python "
        f"{python}: {len(problems)} problem(s):\n"
        + "\n".join(f"- {p}" for p in problems),
        hint=f"Change or remove these pins in {deps.source} and submit again; the "
        "worker's own needs (numpy, pyarrow, datasets, mlflow) follow the repo's "
        "pins, so only the repo's own set has to agree with itself.",
    )

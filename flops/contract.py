"""The ML-repo contract, checked statically before anything is built.

The check reads the repo's source with `ast` and never imports it: the repo's
dependencies are not installed where the check runs. Every problem gets one line
naming the file, the class, the method and what was expected. What only running
the code can tell (imports, constructors) is checked later by `flops.smoke`
inside the project's own environment.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from flops import flower_repo
from flops.dependencies import DependencySet, read_dependencies
from flops.errors import ContractError
from flops.repo_files import RepoPathError, RepoRoot

# method -> number of arguments FLOps passes (besides self)
MODEL_MANAGER_METHODS: dict[str, int] = {
    "set_model_data": 0,
    "get_model": 0,
    "get_model_parameters": 0,
    "set_model_parameters": 1,
    "fit_model": 0,
    "evaluate_model": 0,
}
# `_prepare_data()` is the Oakestra template's convention, not part of the
# contract: flops_utils' DataManagerTemplate gives it a default.
DATA_MANAGER_METHODS: dict[str, int] = {"get_data": 0}

# Bases that declare the contract but implement nothing (flops_utils templates).
_TEMPLATE_BASES = {"ModelManagerTemplate", "DataManagerTemplate", "ABC", "object"}


@dataclass(frozen=True)
class ContractReport:
    dependencies: DependencySet
    notes: tuple[str, ...]
    # Set when the repo is a Flower app, run as it is (flops/flower_repo.py).
    flower_app: flower_repo.FlowerApp | None = None


@dataclass
class _ClassInfo:
    methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
    unresolved_bases: list[str]


def _parse(repo: RepoRoot, name: str, problems: list[str]) -> ast.Module | None:
    try:
        return ast.parse(repo.read_text(name), filename=name)
    except SyntaxError as err:
        problems.append(f"{name} line {err.lineno}: syntax error: {err.msg}")
    except RepoPathError as err:
        problems.append(err.message)
    return None


def _class_in(module: ast.Module, name: str) -> ast.ClassDef | None:
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def _imported_from(module: ast.Module, name: str) -> str | None:
    """The module a top-level `from X import name` brings `name` from."""
    for node in module.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return node.module
    return None


def _collect(
    repo: RepoRoot, module: ast.Module, cls: ast.ClassDef, depth: int = 0
) -> _ClassInfo:
    """Methods of `cls` including those it inherits from classes in the repo."""
    info = _ClassInfo(methods={}, unresolved_bases=[])
    for base in cls.bases:
        base_name = ast.unparse(base)
        if base_name.split(".")[-1] in _TEMPLATE_BASES or depth > 5:
            continue
        base_module, base_cls = module, _class_in(module, base_name)
        if base_cls is None and (source := _imported_from(module, base_name)):
            name = source.replace(".", "/") + ".py"
            parsed = _parse(repo, name, []) if repo.is_file(name) else None
            if parsed is not None:
                base_module, base_cls = parsed, _class_in(parsed, base_name)
        if base_cls is None:
            info.unresolved_bases.append(base_name)
            continue
        inherited = _collect(repo, base_module, base_cls, depth + 1)
        info.methods.update(inherited.methods)
        info.unresolved_bases += inherited.unresolved_bases
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            info.methods[node.name] = node
    return info


def _arity(func: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int | None]:
    """(required positional args, most accepted or None for *args), no self."""
    args = [*func.args.posonlyargs, *func.args.args]
    is_static = any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list
    )
    bound = 0 if is_static else 1
    required = max(len(args) - len(func.args.defaults) - bound, 0)
    most = None if func.args.vararg is not None else max(len(args) - bound, 0)
    return required, most


def _check_class(
    repo: RepoRoot,
    filename: str,
    class_name: str,
    methods: dict[str, int],
    problems: list[str],
    notes: list[str],
) -> None:
    try:
        exists = repo.path(filename).is_file()
    except RepoPathError as err:
        problems.append(err.message)
        return
    if not exists:
        problems.append(
            f"{filename} is missing at the repo root (expected class {class_name} "
            f"with {', '.join(m + '()' for m in methods)})"
        )
        return
    module = _parse(repo, filename, problems)
    if module is None:
        return
    cls = _class_in(module, class_name)
    if cls is None:
        problems.append(f"{filename}: no top-level class {class_name}")
        return
    info = _collect(repo, module, cls)
    for name, passed in methods.items():
        func = info.methods.get(name)
        if func is None:
            if info.unresolved_bases:
                notes.append(
                    f"{filename}: {class_name}.{name}() not found in the repo; assumed "
                    f"inherited from {', '.join(info.unresolved_bases)}"
                )
            else:
                problems.append(f"{filename}: {class_name} has no method {name}()")
            continue
        required, most = _arity(func)
        if required > passed or (most is not None and most < passed):
            expected = "one argument (the list of arrays)" if passed else "no arguments"
            problems.append(
                f"{filename} line {func.lineno}: {class_name}.{name}() must accept "
                f"{expected}; FLOps calls it with {passed}, it takes "
                f"{required} required"
                + (f" and at most {most}" if most is not None else "")
            )


def _check_flower_app(root: RepoRoot, flwr_version: str) -> ContractReport:
    problems: list[str] = []
    app: flower_repo.FlowerApp | None = None
    dependencies: DependencySet | None = None
    try:
        app = flower_repo.read_flower_app(root)
    except ContractError as err:
        problems += err.problems
    try:
        dependencies = read_dependencies(root.root)
    except ContractError as err:
        problems += err.problems
    if problems or app is None or dependencies is None:
        raise ContractError(problems)
    requirements, notes = flower_repo.runtime_requirements(
        dependencies.requirements, flwr_version
    )
    dependencies = dataclasses.replace(
        dependencies,
        requirements=tuple(requirements),
        notes=(*dependencies.notes, *notes),
    )
    return ContractReport(
        dependencies=dependencies,
        notes=(
            f"a Flower app: {app.serverapp} and {app.clientapp} run as they are",
            *dependencies.notes,
        ),
        flower_app=app,
    )


def check_repo(repo: Path, flwr_version: str | None = None) -> ContractReport:
    """Check the contract (or read the Flower app, with `flwr_version` the Flower
    FLOps runs); raise ContractError listing every problem found."""
    problems: list[str] = []
    notes: list[str] = []
    root = RepoRoot(repo)
    if flower_repo.is_flower_app(root):
        if flwr_version is None:
            import flwr

            flwr_version = flwr.__version__
        return _check_flower_app(root, flwr_version)
    _check_class(
        root, "model_manager.py", "ModelManager", MODEL_MANAGER_METHODS, problems, notes
    )
    _check_class(
        root, "data_manager.py", "DataManager", DATA_MANAGER_METHODS, problems, notes
    )
    dependencies: DependencySet | None = None
    try:
        dependencies = read_dependencies(repo)
    except ContractError as err:
        problems += err.problems
    if problems or dependencies is None:
        raise ContractError(problems)
    return ContractReport(
        dependencies=dependencies, notes=(*notes, *dependencies.notes)
    )

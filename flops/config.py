"""The project configuration: one schema for CLI flags, `flops.toml` and the API body.

Unknown keys are an error, never silently dropped: a typo in `flops.toml` must not
turn into a run with defaults the user did not ask for.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from flops.config_parts import (
    Cluster,
    ClusterPlacement,
    PostTraining,
    Resources,
    _Strict,
)
from flops.errors import ConfigError

__all__ = [
    "DEFAULT_PLATFORMS",
    "TAG_PATTERN",
    "Cluster",
    "ClusterPlacement",
    "Flavor",
    "Platform",
    "PostTraining",
    "ProjectConfig",
    "Resources",
    "StrategyParam",
    "format_validation_error",
    "loads_toml",
    "merge_configs",
    "parse_assignment",
    "parse_config",
    "read_toml",
    "ref_problem",
]

Platform = Literal["linux/amd64", "linux/arm64"]
Flavor = Literal["sklearn", "pytorch", "keras"]
StrategyParam = bool | int | float | str
DEFAULT_PLATFORMS: tuple[Platform, ...] = ("linux/amd64",)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_REF_LENGTH = 255
# What git's check-ref-format refuses anywhere in a ref, and "-" up front, which git
# would read as an option. A commit SHA (hex) passes these rules as it is.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def ref_problem(ref: str) -> str | None:
    """Why `ref` is not a branch, tag or commit name git would accept, or None.

    Git's own grammar (`git check-ref-format`), checked here so that nothing a
    tenant sends reaches git's command line as an option or a path.
    """
    if not ref:
        return "is empty"
    if len(ref) > MAX_REF_LENGTH:
        return f"is longer than {MAX_REF_LENGTH} characters"
    if ref.startswith("-"):
        return "starts with '-'"
    if _REF_FORBIDDEN.search(ref):
        return (
            "holds a character or sequence git refuses in a ref (space, control "
            "character, ~ ^ : ? * [ \\, '..', '@{' or '//')"
        )
    if ref == "@" or ref.endswith(("/", ".", ".lock")) or ref.startswith("/"):
        return (
            "is not a ref name ('@', a leading '/', or a trailing '/', '.' or '.lock')"
        )
    if any(part.startswith(".") for part in ref.split("/")):
        return "has a path component starting with '.'"
    return None


class ProjectConfig(_Strict):
    """Everything a submission can set. Defaults are the embedded-default run."""

    repo: str | None = Field(default=None, description="git URL, file:// URL or path")
    ref: str | None = Field(default=None, description="branch, tag or commit")
    name: str | None = Field(default=None, description="project name (default: repo)")
    rounds: int = Field(default=3, ge=1, le=100_000)
    learners: int = Field(default=2, ge=1, le=10_000, description="min available")
    # How many of `learners` join from their owners' machines (`flops learner
    # join`) instead of being placed by the orchestrator.
    joined_learners: int = Field(default=0, ge=0, le=10_000)
    min_fit: int | None = Field(default=None, ge=1)
    min_evaluate: int | None = Field(default=None, ge=0)
    strategy: str = "fedavg"
    strategy_params: dict[str, StrategyParam] = Field(
        default_factory=dict, max_length=64
    )
    # hierarchical: a root aggregator over one aggregator per cluster; then
    # `learners` is the clusters' sum and min_fit/min_evaluate count clusters.
    mode: Literal["classic", "hierarchical"] = "classic"
    clusters: list[Cluster] = Field(default_factory=list, max_length=64)
    data_tags: list[str] = Field(default_factory=list, max_length=32)
    platforms: list[Platform] = Field(
        default_factory=lambda: list(DEFAULT_PLATFORMS), min_length=1, max_length=2
    )
    resources: Resources = Field(default_factory=Resources)
    orchestrator: str = "local"
    round_timeout: float = Field(default=600.0, gt=0, description="seconds")
    post_training: PostTraining = Field(default_factory=PostTraining)
    model_flavor: Flavor | None = None
    # A Flower app's `[tool.flwr.app.config]` values to override (keys it declares).
    app_config: dict[str, StrategyParam] = Field(default_factory=dict, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _learners_from_clusters(cls, data: Any) -> Any:
        """In hierarchical mode `learners` defaults to the clusters' sum."""
        if (
            isinstance(data, dict)
            and data.get("mode") == "hierarchical"
            and "learners" not in data
            and isinstance(data.get("clusters"), list)
        ):
            clusters = [c for c in data["clusters"] if isinstance(c, dict)]
            counts = [c.get("learners") for c in clusters]
            if counts and all(isinstance(n, int) for n in counts):
                data = {**data, "learners": sum(counts)}
        return data

    def _check_hierarchy(self) -> None:
        if self.mode == "classic":
            if self.clusters:
                raise ValueError(
                    "clusters only applies to mode 'hierarchical'; set "
                    'mode = "hierarchical" or drop clusters'
                )
            return
        if len(self.clusters) < 1:
            raise ValueError(
                "mode 'hierarchical' needs clusters: [[clusters]] tables with a "
                "name and learners each"
            )
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster names must differ: {', '.join(names)}")
        total = sum(c.learners for c in self.clusters)
        if self.learners != total:
            raise ValueError(
                f"learners ({self.learners}) must be the clusters' sum ({total}) in "
                "mode 'hierarchical'; leave learners out to take the sum"
            )
        if self.joined_learners:
            raise ValueError(
                "joined_learners are not available in mode 'hierarchical' yet; "
                "place every cluster's learners with the orchestrator"
            )
        mins = (("min_fit", self.min_fit), ("min_evaluate", self.min_evaluate))
        for key, value in mins:
            if value is not None and value > len(self.clusters):
                raise ValueError(
                    f"{key} ({value}) counts clusters in mode 'hierarchical' and "
                    f"cannot exceed them ({len(self.clusters)}); a cluster's own "
                    f"{key} counts its learners"
                )

    @model_validator(mode="after")
    def _check_consistency(self) -> ProjectConfig:
        if self.ref is not None and (problem := ref_problem(self.ref)) is not None:
            raise ValueError(
                f"ref {self.ref!r} {problem}; give a branch, tag or commit SHA"
            )
        if self.min_fit is not None and self.min_fit > self.learners:
            raise ValueError(
                f"min_fit ({self.min_fit}) cannot exceed learners ({self.learners})"
            )
        if self.joined_learners > self.learners:
            raise ValueError(
                f"joined_learners ({self.joined_learners}) cannot exceed learners "
                f"({self.learners}): learners counts placed and joined ones"
            )
        if self.min_evaluate is not None and self.min_evaluate > self.learners:
            raise ValueError(
                f"min_evaluate ({self.min_evaluate}) cannot exceed learners "
                f"({self.learners})"
            )
        self._check_hierarchy()
        for tag in self.data_tags:
            if not TAG_PATTERN.match(tag):
                raise ValueError(
                    f"data tag {tag!r} must be letters, digits, '.', '_' or '-'"
                )
        if self.name is not None and not _NAME_RE.match(self.name):
            raise ValueError(
                f"name {self.name!r} must be lowercase letters, digits, '.', '_' or "
                "'-', starting with a letter or digit"
            )
        return self

    @property
    def placed_learners(self) -> int:
        """The learners the orchestrator places (the rest join)."""
        return self.learners - self.joined_learners

    @property
    def hierarchical(self) -> bool:
        return self.mode == "hierarchical"

    @property
    def root_nodes(self) -> int:
        """The root aggregator's nodes: the learners, or in hierarchical mode the
        clusters (each reports one aggregate)."""
        return len(self.clusters) if self.hierarchical else self.learners

    @property
    def effective_min_fit(self) -> int:
        return self.min_fit if self.min_fit is not None else self.root_nodes

    @property
    def effective_min_evaluate(self) -> int:
        return self.min_evaluate if self.min_evaluate is not None else self.root_nodes

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def cluster_config(self, name: str) -> ProjectConfig:
        """The config one cluster's aggregator runs its learners' rounds with:
        the project's strategy over its learners, its own min_fit/min_evaluate."""
        cluster = self.cluster(name)
        return self.model_copy(
            update={
                "mode": "classic",
                "clusters": [],
                "learners": cluster.learners,
                "min_fit": cluster.min_fit,
                "min_evaluate": cluster.min_evaluate,
            }
        )


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, naming the key as the user wrote it."""
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(config)"
        if problem["type"] == "extra_forbidden":
            known = ", ".join(sorted(ProjectConfig.model_fields))
            lines.append(f"unknown key '{key}' (known keys: {known})")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"'{key}': {message}" if key != "(config)" else message)
    return f"Invalid project config in {source}:\n" + "\n".join(
        f"- {line}" for line in lines
    )


def parse_config(data: dict[str, Any], source: str = "the request") -> ProjectConfig:
    """Validate a config mapping; raise ConfigError listing every problem."""
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read a `flops.toml` file; its keys may sit at the top or under [flops]."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    return loads_toml(text, str(path))


def loads_toml(text: str, name: str) -> dict[str, Any]:
    """A `flops.toml` given as text (`name` says where it came from)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{name} is not valid TOML: {err}") from None
    section = data.get("flops")
    return dict(section) if isinstance(section, dict) and len(data) == 1 else data


def merge_configs(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; nested tables (resources, post_training) merge by key.
    A layer's clusters say how many learners there are: an earlier layer's
    `learners` goes unless that layer sets it too."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if "clusters" in layer and "learners" not in layer:
            merged.pop("learners", None)
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def parse_assignment(text: str) -> tuple[str, StrategyParam]:
    """`key=value` from a command line, the value read as TOML (`epochs=2` is an
    int, `lr=0.1` a float, `on=true` a bool) and as a plain string otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"'{text}' is not KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    if not isinstance(parsed, bool | int | float | str):
        raise ConfigError(f"'{text}': the value must be a string, number or boolean")
    return key.strip(), parsed

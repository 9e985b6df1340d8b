"""Containerfiles rendered from the templates in `images/` (package `flops_images`).

Placeholders are `{{name}}`; every one must be given, and a placeholder that is
alone on its line and rendered empty takes its line with it, so optional parts
(the compile stage) leave no blank gaps. Golden-tested in tests/unit.
"""

from __future__ import annotations

import re
from importlib import resources

from flops.errors import FlopsError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

BASE = "base.Containerfile"
FL_ACTOR = "fl-actor.Containerfile"
# Debian's nobody: who runs package builds inside image builds.
BUILD_USER = "65534:65534"
INFERENCE = "inference.Containerfile"


def template(name: str) -> str:
    return resources.files("flops_images").joinpath(name).read_text()


def render(name: str, **values: str) -> str:
    text = template(name)
    wanted = set(_PLACEHOLDER.findall(text))
    missing = wanted - values.keys()
    unknown = values.keys() - wanted
    if missing or unknown:
        raise FlopsError(
            f"Rendering {name}: missing {sorted(missing)}, unknown {sorted(unknown)}."
        )
    lines = []
    for line in text.splitlines():
        alone = _PLACEHOLDER.fullmatch(line.strip())
        if alone and not values[alone.group(1)]:
            continue
        lines.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], line))
    return "\n".join(lines) + "\n"


def compile_stage(base: str, requirements: dict[str, list[str]]) -> str:
    """A stage that builds, under emulation, what has no wheel for the platform.

    `requirements` maps a package folder of the image (`site`, `user-site`) to
    what it lacks. Only the packages listed run through it; everything with a
    wheel was installed on the build host for the target platform. Building a
    package runs its code (a tenant's choice), so that step runs as `nobody`,
    never as the root of a chroot-isolated build.
    """
    wanted = {dest: reqs for dest, reqs in requirements.items() if reqs}
    folders = " ".join(f"/compiled/{dest}" for dest in wanted)
    lines = [
        f"FROM {base} AS compile\n"
        "RUN apt-get update -qq \\\n"
        " && apt-get install -y -qq --no-install-recommends"
        " python3-pip python3-dev build-essential > /dev/null \\\n"
        f" && mkdir -p {folders} && chown -R {BUILD_USER} /compiled\n"
        f"USER {BUILD_USER}"
    ]
    for dest, reqs in wanted.items():
        quoted = " ".join(f"'{req}'" for req in reqs)
        lines.append(
            "RUN HOME=/tmp python3 -m pip install --break-system-packages --no-deps"
            f" --no-compile --no-cache-dir --target /compiled/{dest} {quoted}"
        )
    return "\n".join(lines)


def compiled_copy(dest: str) -> str:
    return f"COPY --from=compile /compiled/{dest}/ /opt/flops/{dest}/"

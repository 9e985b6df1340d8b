"""Smoke-test results kept by what decides them: the repo's files, the
environment they ran in and what the test was asked. A project resubmitted
with the same code into the same environment is not imported again (the
smoke test costs a cold import of the ML stack, 10-20 s); anything changed is
a new key, so a stale result is never read.

Results live under the service's home, per tenant, where tenant code never
writes; a file that does not parse is a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from pydantic import ValidationError

from flops.flower_repo import FlowerApp
from flops_management.pipeline.environment import SmokeResult
from flops_management.pipeline.installer import package_digest
from flops_management.settings import Settings

logger = logging.getLogger(__name__)


def content_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes (symlinks by their
    target's text, never followed; `.git` left out)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder, followlinks=False):
        # os.walk lists a symlinked folder among `dirs` and does not enter it:
        # it is hashed by its target's text, as a symlinked file is.
        linked = [d for d in dirs if (Path(root) / d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d != ".git" and d not in linked)
        for name in sorted([*files, *linked]):
            path = Path(root) / name
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + str(path.readlink()).encode())
            elif not path.is_file():  # nothing git checks out; never opened
                digest.update(b"special")
            else:
                with path.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


class SmokeCache:
    def __init__(self, settings: Settings, tenant: str) -> None:
        self.folder = settings.home / "cache" / "smoke" / tenant

    def key(
        self,
        repo: Path,
        env: Path,
        flavor: str | None,
        requirements: list[str],
        flower_app: FlowerApp | None,
    ) -> str:
        material = {
            "repo": content_digest(repo),
            "environment": str(env),
            "flavor": flavor,
            "requirements": requirements,
            "flower_app": None
            if flower_app is None
            else [flower_app.serverapp, flower_app.clientapp, flower_app.model_export],
            # flops.smoke itself, as the environment's copy of FLOps runs it.
            "flops": package_digest(),
        }
        encoded = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()

    def get(self, key: str) -> SmokeResult | None:
        path = self.folder / f"{key}.json"
        try:
            return SmokeResult.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:
            logger.warning("unreadable smoke-test result %s: ignored", path)
            return None

    def put(self, key: str, result: SmokeResult) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json"
        partial = path.with_suffix(".partial")
        partial.write_text(result.model_dump_json())
        partial.replace(path)  # whole or absent, whoever reads it

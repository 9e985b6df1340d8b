"""What only running the repo can tell: run inside the project's own environment.

`python -m flops.smoke --repo DIR` imports `model_manager`, builds a ModelManager
without data (as the aggregator does), reads its parameters and the model flavor,
and prints one JSON line. On failure it prints the user-facing reason and exits 1,
so a missing dependency is reported before any learner starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from flops import model_export, usercode
from flops.config import Flavor
from flops.errors import FlopsError

RESULT_PREFIX = "FLOPS_SMOKE "


class SmokeResult(BaseModel):
    """What the smoke test reports; the service reads nothing else from the line
    (it is printed by a process running the tenant's code)."""

    model_config = ConfigDict(extra="forbid")

    flavor: Flavor
    arrays: int = Field(ge=1)
    parameter_bytes: int = Field(ge=0)


def check(repo: Path, flavor: str | None) -> SmokeResult:
    manager = usercode.new_model_manager(repo)
    params = usercode.get_parameters(manager)
    if not params:
        raise usercode.UserCodeError("get_model_parameters() returned no arrays")
    model = usercode.call(manager.get_model, "get_model()")
    return SmokeResult(
        flavor=flavor or model_export.detect_flavor(model),  # type: ignore[arg-type]
        arrays=len(params),
        parameter_bytes=int(sum(p.nbytes for p in params)),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--flavor", default=None)
    args = parser.parse_args(argv)
    try:
        result = check(args.repo.resolve(), args.flavor)
    except FlopsError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(1) from None
    print(RESULT_PREFIX + result.model_dump_json())


if __name__ == "__main__":
    main()

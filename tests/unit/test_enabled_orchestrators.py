"""An install that enables only some backends refuses the others by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from flops.config import parse_config
from flops.errors import LimitError
from flops_management.limits import check_config
from flops_management.settings import Settings


def test_every_backend_is_enabled_unless_the_operator_narrows_them(
    tmp_path: Path,
) -> None:
    check_config(parse_config({"orchestrator": "local"}), Settings(home=tmp_path))


def test_a_backend_left_out_is_refused_with_the_ones_that_run(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, orchestrators=["docker", "oakestra"])
    check_config(parse_config({"orchestrator": "docker"}), settings)
    with pytest.raises(LimitError) as refused:
        check_config(parse_config({"orchestrator": "local"}), settings)
    text = str(refused.value)
    assert "orchestrator 'local' is not enabled" in text
    assert "runs jobs on: docker, oakestra (FLOPS_ORCHESTRATORS)" in text
    assert "--orchestrator docker" in text

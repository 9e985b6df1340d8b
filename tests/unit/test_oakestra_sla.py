"""The oakestra backend's SLAs against a golden file, each validated against
the stand-in's copy of Oakestra's SLA schema (tests/oakestra_standin.py), and
that copy against Oakestra's own example SLAs.

FLOPS_UPDATE_GOLDEN=1 rewrites the golden file from the builders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flops.config import Resources
from flops_management.orchestrators import oakestra_sla as sla
from tests.oakestra_standin import validate_sla

GOLDEN = Path(__file__).parent.parent / "golden" / "oakestra"
JOB = "0123456789abcdef0123456789abcdef"
IMAGE = "registry.example:5000/flops/t/p@sha256:" + "ab" * 32
CACHE = Path(__file__).parents[2] / ".cache" / "oakestra"
# Oakestra's own CLI on PyPI: its wheel carries example SLAs by Oakestra's team.
OAK_CLI = "oak-cli==0.5.5"


def _job_sla() -> dict[str, Any]:
    root = sla.rr_ip(JOB, 0)
    cluster = sla.rr_ip(JOB, 1)
    plans = [
        sla.ServicePlan(
            "aggregator",
            ["aggregator", "--host", "0.0.0.0", "--port", "8000"],
            {"FLOPS_JOB": JOB},
            rr_ip=root,
        ),
        sla.ServicePlan(
            "cluster0",
            ["cluster", "--name", "edge-a", "--superlink", f"{root}:8000"],
            {"FLOPS_JOB": JOB},
            placement=sla.OakestraPlacement(cluster="site-a"),
            rr_ip=cluster,
        ),
        sla.ServicePlan(
            "learner0",
            ["learner", "--superlink", f"{cluster}:8000", "--name", "learner-0"],
            {"OMP_NUM_THREADS": "2"},
            Resources(cpu=1.5, memory="512MiB"),
            sla.OakestraPlacement(cluster="site-a", node="worker-7"),
        ),
    ]
    services = [sla.microservice(plan, IMAGE) for plan in plans]
    return sla.application_sla(JOB, "Admin", "FLOps job mnist-sklearn", services)


def test_the_job_sla_equals_its_golden_file_and_validates() -> None:
    built = _job_sla()
    golden = GOLDEN / "job-sla.json"
    if os.environ.get("FLOPS_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(built, indent=2) + "\n")
    assert built == json.loads(golden.read_text())
    validate_sla(built)
    # Adding services to the created application names it.
    added = sla.application_sla(JOB, "Admin", "x", [], application_id="66aa")
    assert added["applications"][0]["applicationID"] == "66aa"
    validate_sla(added)


def test_names_addresses_and_resources_fit_oakestra() -> None:
    assert sla.app_name(JOB) == "flops0123456789ab"
    with pytest.raises(ValueError, match="not an Oakestra name"):
        sla.check_name("edge-a")  # a cluster's own name never names a service
    first, second = sla.rr_ip(JOB, 0), sla.rr_ip(JOB, 1)
    assert (
        first.startswith("10.30.")
        and first.rsplit(".", 1)[0] == second.rsplit(".", 1)[0]
    )
    assert (first.rsplit(".", 1)[1], second.rsplit(".", 1)[1]) == ("1", "2")
    assert sla.rr_ip(JOB, 0) == first  # the same job, the same address
    assert (sla.memory_mb(Resources(memory="1g")), sla.vcpus(Resources(cpu=0.5))) == (
        1024,
        1,
    )
    assert (sla.memory_mb(Resources()), sla.vcpus(Resources())) == (0, 0)


def test_a_service_oakestra_would_refuse_is_refused_by_the_standin() -> None:
    bad = _job_sla()
    bad["applications"][0]["microservices"][0]["port"] = 8000  # Oakestra: a string
    with pytest.raises(jsonschema.ValidationError):
        validate_sla(bad)


def _oak_cli_slas() -> list[Path]:
    """Oakestra's example SLAs, from its CLI's wheel (downloaded once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob("oak_cli-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
             "-d", str(CACHE), OAK_CLI],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        wheels = list(CACHE.glob("oak_cli-*.whl"))
    found = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            if name.startswith("oak_cli/apps/prepared_SLAs/") and name.endswith(
                ".json"
            ):
                target = CACHE / Path(name).name
                target.write_bytes(wheel.read(name))
                found.append(target)
    return found


def test_oakestras_own_example_slas_pass_the_standins_schema() -> None:
    examples = _oak_cli_slas()
    assert len(examples) >= 3
    for example in examples:
        validate_sla(json.loads(example.read_text()))

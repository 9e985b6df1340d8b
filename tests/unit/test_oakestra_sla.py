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
from flops_management.orchestrators import (
    ClusterSpec,
    DeploymentSpec,
    LearnerSpec,
    Placement,
    StoredPartitions,
)
from flops_management.orchestrators import oakestra_plans as plans
from flops_management.orchestrators import oakestra_sla as sla
from tests.oakestra_standin import validate_sla

GOLDEN = Path(__file__).parent.parent / "golden" / "oakestra"
JOB = "0123456789abcdef0123456789abcdef"
IMAGE = "registry.example:5000/flops/t/p@sha256:" + "ab" * 32
CACHE = Path(__file__).parents[2] / ".cache" / "oakestra"
# Oakestra's own CLI on PyPI: its wheel carries example SLAs by Oakestra's team.
OAK_CLI = "oak-cli==0.5.5"


def _job_sla() -> dict[str, Any]:
    """A hierarchical job of one cluster (placed in Oakestra cluster site-a)
    with a learner on worker-7, as oakestra_plans makes it; fixed stand-ins
    for the TLS files and node keys, which are random in a real job."""
    placed = Placement.on_node("worker-7", "site-a")
    spec = DeploymentSpec(
        job_id=JOB,
        workdir=Path("/w"),
        repo_dir=Path("/r"),
        learners=(
            LearnerSpec(
                "learner-0", StoredPartitions("t", ("digits",), 0), placed, "edge-a"
            ),
        ),
        resources=Resources(cpu=1.5, memory="512MiB"),
        image=IMAGE,
        env={"FLOPS_JOB": JOB},
        aggregator_env={"MLFLOW_TRACKING_TOKEN": "job-scoped"},
        clusters=(ClusterSpec("edge-a", Placement.in_cluster("site-a")),),
    )
    secrets = plans.JobSecrets(
        superlink={"ca.crt": b"CA", "superlink.crt": b"CRT", "superlink.key": b"KEY"},
        node_keys={"learner-0": b"NODE0", "edge-a-uplink": b"UPLINK"},
        public_keys={},
        ca_file=Path("/w/tls/ca/ca.crt"),
    )
    volume = plans.DataVolume("flops-data", "csi.example.org")
    services = [
        sla.microservice(plan, IMAGE)
        for plan in (
            plans.aggregator_plan(spec, secrets),
            plans.cluster_plan(spec, spec.clusters[0], secrets),
            plans.learner_plan(spec, spec.learners[0], secrets, volume),
        )
    ]
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


def test_the_superlink_certificate_names_every_overlay_address_and_loopback() -> None:
    spec = DeploymentSpec(
        job_id=JOB,
        workdir=Path("/w"),
        repo_dir=Path("/r"),
        learners=(),
        clusters=(ClusterSpec("edge-a"), ClusterSpec("edge-b")),
    )
    assert plans.superlink_hosts(spec) == [
        sla.rr_ip(JOB, 0),
        sla.rr_ip(JOB, 1),
        sla.rr_ip(JOB, 2),
        "127.0.0.1",  # the executor beside each SuperLink dials it there
        "localhost",
    ]

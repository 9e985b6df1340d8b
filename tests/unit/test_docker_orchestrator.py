"""The docker backend's containers and the image entrypoint's commands, by equality."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from flops.actor import (
    aggregator_commands,
    cluster_pairs,
    executor_env,
    learner_commands,
)
from flops.actor_commands import FlowerTLS
from flops.config import Resources
from flops_management.orchestrators.base import (
    ClusterEndpoint,
    ClusterSpec,
    DeploymentSpec,
    LearnerSpec,
)
from flops_management.orchestrators.docker_clusters import (
    ClusterPorts,
    cluster_container_spec,
    cluster_hosts,
    cluster_learner_specs,
    endpoint,
)
from flops_management.orchestrators.docker_containers import (
    container_specs,
    superlink_hosts,
)
from flops_management.orchestrators.flower_tls import JobTLS
from flops_management.orchestrators.topology import StoredPartitions
from flops_management.sandbox import Identity

THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Where the host backends staged each learner's data (orchestrators.host).
DATA = {"learner-0": Path("/w/l0"), "learner-1": Path("/w/l1")}
# The job's TLS folders (orchestrators.flower_tls).
TLS = JobTLS(superlink=Path("/w/tls/superlink"), ca=Path("/w/tls/ca"))


def _spec(**resources: object) -> DeploymentSpec:
    return DeploymentSpec(
        job_id="0123456789abcdef",
        workdir=Path("/w"),
        repo_dir=Path("/w/repo"),
        learners=(
            LearnerSpec("learner-0", StoredPartitions("t", ("digits",), 0)),
            LearnerSpec("learner-1", None),
        ),
        resources=Resources.model_validate(resources),
        image="reg/flops/t/p:tag",
        identity=Identity(2000003, 2000003),
        aggregator_env={"MLFLOW_TRACKING_PASSWORD": "job-secret"},
    )


def test_on_the_host_network_learners_use_loopback_ports_and_publish_nothing() -> None:
    aggregator, first, second = container_specs(
        _spec(cpu=1.5, memory="512MiB"), "host", 41000, [42000, 42001], DATA, TLS
    )
    assert aggregator.name == "flops-0123456789ab-aggregator"
    assert aggregator.command == [
        "aggregator", "--host", "127.0.0.1", "--port", "41000",
        "--poll-interval", "0.05", "--tls-dir", "/tls",
    ]  # fmt: skip
    assert aggregator.ports == {} and aggregator.mem_limit is None
    # Only the aggregator holds the SuperLink's key; learners get the CA alone.
    assert aggregator.volumes == {"/w/tls/superlink": {"bind": "/tls", "mode": "ro"}}
    assert first.command == [
        "learner", "--superlink", "127.0.0.1:41000", "--name", "learner-0",
        "--data-dir", "/data", "--poll-interval", "0.05",
        "--partition-id", "0", "--num-partitions", "2", "--tls-dir", "/tls",
        "--node-key", "/node-key/node.key", "--port", "42000",
    ]  # fmt: skip
    # Each learner its own key (orchestrators.node_auth), no other's.
    assert first.volumes == {
        "/w/l0": {"bind": "/data", "mode": "ro"},
        "/w/tls/ca": {"bind": "/tls", "mode": "ro"},
        "/w/keys/learner-0": {"bind": "/node-key", "mode": "ro"},
    }
    assert second.volumes["/w/l1"] == {"bind": "/data", "mode": "ro"}
    assert (first.nano_cpus, first.mem_limit) == (1_500_000_000, 512 * 2**20)
    assert all(first.environment[name] == "2" for name in THREADS)
    assert first.ports == {} and second.ports == {}


def test_actors_run_as_the_tenant_and_only_the_aggregator_gets_its_credential() -> None:
    aggregator, *learners = container_specs(_spec(), "host", 41000, [1, 2], DATA, TLS)
    assert {c.user for c in (aggregator, *learners)} == {"2000003:2000003"}
    assert aggregator.environment == {
        "HOME": "/tmp",
        "FLWR_HOME": "/tmp/flwr",
        "MLFLOW_TRACKING_PASSWORD": "job-secret",
    }
    for learner in learners:
        assert "MLFLOW_TRACKING_PASSWORD" not in learner.environment
        assert learner.environment["HOME"] == "/tmp"


def test_on_a_container_network_only_the_control_port_reaches_host_loopback() -> None:
    aggregator, learner, _ = container_specs(
        _spec(), "flops-net", 41000, [1, 2], DATA, TLS
    )
    assert aggregator.command[:3] == ["aggregator", "--host", "0.0.0.0"]
    assert aggregator.ports == {"8000/tcp": ("127.0.0.1", 41000)}
    assert learner.command[2] == "flops-0123456789ab-aggregator:8000"
    assert "--port" not in learner.command and learner.ports == {}
    assert learner.nano_cpus is None and learner.mem_limit is None


def test_the_superlinks_certificate_names_every_address_it_is_dialled_at() -> None:
    assert superlink_hosts("0123456789abcdef", "host") == ["127.0.0.1", "localhost"]
    assert superlink_hosts("0123456789abcdef", "flops-net") == [
        "flops-0123456789ab-aggregator",
        "127.0.0.1",
        "localhost",
    ]


def test_the_image_entrypoint_runs_flower_and_the_warm_executor() -> None:
    tls = FlowerTLS("/tls")
    server, executor = aggregator_commands(
        "0.0.0.0", 8000, "/opt/flops/repo", 0.05, tls=tls
    )
    assert server == [
        sys.executable, "-m", "flops.actor", "run", "flower-superlink",
        "--ssl-ca-certfile", "/tls/ca.crt", "--ssl-certfile", "/tls/superlink.crt",
        "--ssl-keyfile", "/tls/superlink.key", "--enable-supernode-auth",
        "--isolation", "process", "--disable-runtime-dependency-installation",
        "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    assert executor == [
        sys.executable, "-m", "flops.executor", "aggregator",
        "--runtime-api-address", "127.0.0.1:8000", "--repo-dir", "/opt/flops/repo",
        "--poll-interval", "0.05", "--root-certificates", "/tls/ca.crt",
    ]  # fmt: skip
    node, learner = learner_commands(
        "agg:8000", 9094, "/data", "l0", "/r", 0.1, 1, 2, tls=tls, node_key="/k/n"
    )
    assert node[4:] == [
        "flower-supernode", "--root-certificates", "/tls/ca.crt",
        "--auth-supernode-private-key", "/k/n", "--superlink", "agg:8000",
        "--isolation", "process", "--host", "127.0.0.1", "--port", "9094",
        "--node-config", 'flops-data-dir="/data" flops-learner="l0" '
        'partition-id=1 num-partitions=2 data-path="/data"',
    ]  # fmt: skip
    assert learner[3:6] == ["learner", "--runtime-api-address", "127.0.0.1:9094"]
    # A learner's executor talks to its own SuperNode on loopback, in plaintext.
    assert "--root-certificates" not in learner


def test_the_image_entrypoint_asks_for_tls_or_a_named_dev_switch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flops.actor import main

    with pytest.raises(SystemExit) as stopped:
        main(["aggregator"])
    assert stopped.value.code == 2
    assert "--tls-dir" in capsys.readouterr().err


def test_a_flower_apps_executor_runs_its_component_on_the_users_packages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = dataclasses.replace(_spec(), flower_app=("app.server:app", "app.client:app"))
    aggregator, learner, _ = container_specs(
        spec, "flops-net", 41000, [1, 2], DATA, TLS
    )
    assert aggregator.command[-2:] == ["--flower-app", "app.server:app"]
    assert learner.command[-2:] == ["--flower-app", "app.client:app"]
    _, executor = learner_commands(
        "agg:8000", 9094, "/data", "l0", "/r", 0.1, flower_app="app.client:app"
    )
    assert executor[-2:] == ["--flower-app", "app.client:app"]
    assert "--worker-path" not in executor
    monkeypatch.setenv("FLOPS_WORKER_PATH", "/opt/flops/runtime:/opt/flops/user-site")
    env = executor_env("app.client:app")
    assert env is not None
    assert env["PYTHONPATH"] == "/opt/flops/runtime:/opt/flops/user-site"
    assert executor_env(None) is None


def test_the_superlinks_state_lives_on_a_volume_of_the_job() -> None:
    aggregator, *_ = container_specs(
        _spec(), "host", 41000, [42000, 42001], DATA, TLS, Path("/w/flwr/superlink")
    )
    assert aggregator.command[-2:] == ["--database", "/state/superlink.db"]
    assert aggregator.volumes["/w/flwr/superlink"] == {"bind": "/state", "mode": "rw"}


def _hierarchical_spec() -> DeploymentSpec:
    learners = tuple(
        LearnerSpec(
            f"learner-{i}",
            StoredPartitions("t", ("digits",), i),
            cluster="edge-a" if i < 2 else "edge-b",
        )
        for i in range(4)
    )
    return dataclasses.replace(
        _spec(),
        learners=learners,
        clusters=(ClusterSpec("edge-a"), ClusterSpec("edge-b")),
    )


def test_a_cluster_is_one_container_its_learners_dial_by_name() -> None:
    spec = _hierarchical_spec()
    ports = ClusterPorts(43000, 43001, (43002, 43003))
    state = Path("/w/flwr/edge-b-superlink")
    root = "flops-0123456789ab-aggregator:8000"
    cluster = cluster_container_spec(
        spec, spec.clusters[1], "flops-net", root, ports, TLS, state
    )
    assert (cluster.name, cluster.role) == (
        "flops-0123456789ab-edge-b-aggregator",
        "edge-b-aggregator",
    )
    assert cluster.command == [
        "cluster", "--name", "edge-b", "--superlink", root,
        "--host", "0.0.0.0", "--port", "8000", "--poll-interval", "0.05",
        "--tls-dir", "/tls", "--node-key", "/node-key/node.key",
        "--database", "/state/superlink.db",
    ]  # fmt: skip
    # Its SuperLink's key, its uplink's own node key, its state; the job's
    # MLflow credential (it logs the cluster's run); its port on loopback.
    assert cluster.volumes == {
        "/w/tls/superlink": {"bind": "/tls", "mode": "ro"},
        "/w/keys/edge-b-uplink": {"bind": "/node-key", "mode": "ro"},
        "/w/flwr/edge-b-superlink": {"bind": "/state", "mode": "rw"},
    }
    assert cluster.environment["MLFLOW_TRACKING_PASSWORD"] == "job-secret"
    assert cluster.ports == {"8000/tcp": ("127.0.0.1", 43000)}
    data = {f"learner-{i}": Path(f"/w/l{i}") for i in range(4)}
    learners = cluster_learner_specs(
        spec, spec.clusters[1], "flops-net", ports, data, TLS
    )
    assert [c.role for c in learners] == ["learner-2", "learner-3"]
    for index, learner in enumerate(learners, start=2):
        assert learner.command[:3] == [
            "learner",
            "--superlink",
            "flops-0123456789ab-edge-b-aggregator:8000",
        ]
        # Partitions across the whole job: as a classic job of four learners.
        position = learner.command.index("--partition-id")
        assert learner.command[position : position + 4] == [
            "--partition-id", str(index), "--num-partitions", "4"
        ]  # fmt: skip
        assert "MLFLOW_TRACKING_PASSWORD" not in learner.environment
    assert cluster_hosts(spec.job_id, spec.clusters) == [
        "flops-0123456789ab-edge-a-aggregator",
        "flops-0123456789ab-edge-b-aggregator",
    ]
    assert endpoint(ports) == ClusterEndpoint(
        "127.0.0.1:43000", "/tmp/flops-relay/relay.sock"
    )


def test_on_the_host_network_a_cluster_uses_loopback_ports() -> None:
    spec = _hierarchical_spec()
    ports = ClusterPorts(43000, 43001, (43002, 43003))
    cluster = cluster_container_spec(
        spec, spec.clusters[0], "host", "127.0.0.1:41000", ports, TLS
    )
    assert cluster.command[-2:] == ["--runtime-port", "43001"]
    assert cluster.command[cluster.command.index("--host") + 1] == "127.0.0.1"
    assert cluster.ports == {}
    learners = cluster_learner_specs(spec, spec.clusters[0], "host", ports, {
        "learner-0": Path("/w/l0"), "learner-1": Path("/w/l1")}, TLS)  # fmt: skip
    assert [c.command[2] for c in learners] == ["127.0.0.1:43000"] * 2
    assert [c.command[-1] for c in learners] == ["43002", "43003"]


def test_a_cluster_actor_runs_its_superlink_and_its_uplink() -> None:
    tls = FlowerTLS("/tls")
    link, uplink = cluster_pairs(
        "edge-a", "root:8000", "0.0.0.0", 8000, 9094, "/repo", 0.05, tls,
        "/node-key/node.key",
    )  # fmt: skip
    assert link.ready_port == 8000 and "--enable-supernode-auth" in link.server
    assert link.executor[link.executor.index("flops.executor") + 1] == "aggregator"
    assert uplink.ready_port == 9094
    assert uplink.server[uplink.server.index("--superlink") + 1] == "root:8000"
    config = uplink.server[uplink.server.index("--node-config") + 1]
    assert config == 'flops-learner="edge-a" flops-relay="/tmp/flops-relay/relay.sock"'
    assert uplink.executor[uplink.executor.index("flops.executor") + 1] == "learner"

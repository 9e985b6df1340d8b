"""The local orchestrator's argument lists, by equality."""

from pathlib import Path

from flops.app.run_settings import node_config_args
from flops.config import Resources
from flops_management.orchestrators import local_commands as local

BIN = Path("/envs/abc/bin")


def test_superlink_args() -> None:
    """TLS with the job's certificate; plaintext only when a dev switch asks."""
    assert local.superlink_args(BIN, 9000, Path("/job/tls/superlink")) == [
        "/envs/abc/bin/flower-superlink",
        "--ssl-ca-certfile",
        "/job/tls/superlink/ca.crt",
        "--ssl-certfile",
        "/job/tls/superlink/superlink.crt",
        "--ssl-keyfile",
        "/job/tls/superlink/superlink.key",
        "--enable-supernode-auth",
        "--isolation",
        "process",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
    ]
    assert local.superlink_args(BIN, 9000, None)[1] == "--insecure"
    # Its state in a file, when given one (the job's), outlives the process.
    with_state = local.superlink_args(BIN, 9000, None, Path("/job/flwr/state.db"))
    assert with_state[5:7] == ["--database", "/job/flwr/state.db"]


def test_supernode_args() -> None:
    config = node_config_args(Path("/data/l0"), "learner-0", 1, 3)
    # FLOps' own keys, and Flower's conventional ones for Flower apps.
    assert config == (
        'flops-data-dir="/data/l0" flops-learner="learner-0" '
        'partition-id=1 num-partitions=3 data-path="/data/l0"'
    )
    tls, key = Path("/job/tls/ca"), Path("/job/keys/learner-0/node.key")
    assert local.supernode_args(BIN, "127.0.0.1:9000", 9100, config, tls, key) == [
        "/envs/abc/bin/flower-supernode",
        "--root-certificates",
        "/job/tls/ca/ca.crt",
        "--auth-supernode-private-key",
        "/job/keys/learner-0/node.key",
        "--superlink",
        "127.0.0.1:9000",
        "--isolation",
        "process",
        "--host",
        "127.0.0.1",
        "--port",
        "9100",
        "--node-config",
        config,
    ]


def test_executor_args() -> None:
    """The executor runs from FLOps' runtime environment, its model worker from
    the user's."""
    assert local.executor_args(
        BIN,
        "learner",
        "127.0.0.1:9100",
        Path("/repo"),
        0.05,
        Path("/envs/user/bin/python"),
    ) == [
        "/envs/abc/bin/python",
        "-m",
        "flops.executor",
        "learner",
        "--runtime-api-address",
        "127.0.0.1:9100",
        "--repo-dir",
        "/repo",
        "--poll-interval",
        "0.05",
        "--worker-python",
        "/envs/user/bin/python",
    ]
    # The aggregator's executor reaches the SuperLink over TLS.
    aggregator = local.executor_args(
        BIN,
        "aggregator",
        "127.0.0.1:9000",
        Path("/repo"),
        0.05,
        Path("/envs/user/bin/python"),
        tls=Path("/job/tls/ca"),
    )
    assert aggregator[-4:-2] == ["--root-certificates", "/job/tls/ca/ca.crt"]


def test_the_flwr_cli_checks_the_superlink_against_the_ca() -> None:
    import tomllib

    from flops_management.pipeline.flower_runs import flwr_cli_config

    config = tomllib.loads(flwr_cli_config("127.0.0.1:9000", Path("/job/ca.crt")))
    assert config["superlink"] == {
        "default": "flops",
        "flops": {"address": "127.0.0.1:9000", "root-certificates": "/job/ca.crt"},
    }
    insecure = tomllib.loads(flwr_cli_config("127.0.0.1:9000", None))
    assert insecure["superlink"]["flops"]["insecure"] is True


def test_limits_become_prlimit_and_taskset() -> None:
    assert local.limit_prefix(Resources(), None) == []
    assert local.limit_prefix(Resources(memory="1g", cpu=2), [0, 1]) == [
        "prlimit",
        f"--data={1024**3}",
        "--",
        "taskset",
        "--cpu-list",
        "0,1",
    ]


def test_cores_are_whole_and_round_robin() -> None:
    cores = [0, 1, 2, 3]
    assert local.learner_cores(Resources(), 0, cores) is None
    assert local.learner_cores(Resources(cpu=0.5), 0, cores) == [0]
    assert local.learner_cores(Resources(cpu=0.5), 1, cores) == [1]
    assert local.learner_cores(Resources(cpu=2), 1, cores) == [2, 3]
    assert local.learner_cores(Resources(cpu=8), 0, cores) == [0, 1, 2, 3]

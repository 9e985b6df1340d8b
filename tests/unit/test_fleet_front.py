"""The Fleet-only front's HAProxy config against its golden file, and its
command line by equality (management/orchestrators/fleet_front.py)."""

from __future__ import annotations

from pathlib import Path

from flops_management.orchestrators.fleet_front import front_config, haproxy_args

GOLDEN = Path(__file__).parent.parent / "golden"


def test_the_front_passes_fleet_and_health_only_over_tls_both_ways() -> None:
    config = front_config(
        "0.0.0.0:9443",
        Path("/job/tls/front/front.pem"),
        "127.0.0.1:41000",
        Path("/job/tls/ca/ca.crt"),
    )
    assert config == (GOLDEN / "fleet-front.haproxy.cfg").read_text()
    # What the golden file must say, read as a reviewer would.
    assert "http-request deny deny_status 403 unless fleet or health" in config
    assert "acl fleet path_beg /v1/fleet/" in config
    assert "ssl verify required ca-file /job/tls/ca/ca.crt" in config


def test_haproxy_runs_in_the_foreground_on_the_rendered_config() -> None:
    assert haproxy_args("/usr/sbin/haproxy", Path("/job/front.cfg")) == [
        "/usr/sbin/haproxy",
        "-f",
        "/job/front.cfg",
        "-db",
    ]

"""A worker for the stand-in root orchestrator (tests/oakestra_standin.py):
what Oakestra's cluster orchestrator and a worker's NodeEngine and NetManager
do with a deployed instance, done here with Podman. A STAND-IN, not Oakestra.

- Each instance is a real container of the service's image, its argv the
  SLA's `cmd` (Oakestra's NodeEngine replaces the whole argv too), its
  variables the SLA's `environment`, `vcpus`/`memory` as limits.
- Oakestra's overlay (10.30.0.0/16) is a Podman bridge network of that range:
  a service with an `rr_ip` gets it as its container's address (Oakestra's
  NetManager proxies the address to an instance; one instance here), the host
  reaches it over the bridge as a machine on the overlay would.
- A CSI volume is a host folder, by `volume_id`.
- Status and logs are reported as Oakestra's clusters report them: the
  instance's status, and the last 1,024 bytes of its log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

NETWORK = "flops-oakestra"
SUBNET = "10.30.0.0/16"
GATEWAY = "10.30.0.1"  # the host, on the overlay
DYNAMIC = "10.30.0.0/24"  # instances without an rr_ip; rr_ips are 10.30.1+.x
LOG_BYTES = 1024
IP_FREEBIND = 15  # Linux: bind an address no interface has yet


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=120
    )


def ensure_network() -> None:
    if _podman("network", "exists", NETWORK, check=False).returncode != 0:
        _podman(
            "network", "create", "--subnet", SUBNET, "--gateway", GATEWAY,
            "--ip-range", DYNAMIC, NETWORK,
        )  # fmt: skip


class TcpForward:
    """host:port on the overlay's gateway forwarded to a loopback port: how a
    worker reaches a service (MLflow) that listens on the host's loopback.
    Bound with IP_FREEBIND: the bridge has no address until a container is on
    it."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        self.server.bind(listen)
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def _image(reference: str) -> str:
    """The image as the builder left it in local storage (a worker pulls it
    from the registry; the stand-in's shares the builder's storage)."""
    for candidate in (reference, f"{reference}-amd64"):
        if _podman("image", "exists", candidate, check=False).returncode == 0:
            return candidate
    _podman("pull", "--tls-verify=false", reference)
    return reference


class PodmanWorker:
    """Runs the stand-in's instances; `volumes`: CSI volume id -> host folder."""

    def __init__(self, volumes: dict[str, Path]) -> None:
        self.volumes = volumes
        self.containers: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        ensure_network()

    def container(self, service_id: str, number: int) -> str:
        return f"oak-{service_id[:12]}-{number}"

    def run_args(self, service: dict[str, Any], name: str) -> list[str]:
        args = ["run", "-d", "--name", name, "--runtime", "runc", "--network", NETWORK]
        # This sandbox lets rootful Podman neither raise nor inherit its limits
        # (as FLOPS_DOCKER_ULIMITS says for the docker backend).
        args += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        if service.get("RR_ip"):
            args += ["--ip", str(service["RR_ip"])]
        for pair in service.get("environment") or []:
            args += ["--env", pair]
        if service.get("vcpus"):
            args += ["--cpus", str(service["vcpus"])]
        if service.get("memory"):
            args += ["--memory", f"{service['memory']}m"]
        for volume in service.get("volumes") or []:
            host = self.volumes[volume["volume_id"]]
            args += ["--volume", f"{host}:{volume['mount_path']}:ro"]
        if service.get("port"):
            host_port, _, container = str(service["port"]).partition(":")
            args += ["--publish", f"127.0.0.1:{host_port}:{container or host_port}"]
        cmd = list(service.get("cmd") or [])
        if cmd:  # the whole argv, as Oakestra's NodeEngine sets it
            args += ["--entrypoint", json.dumps(cmd)]
        return [*args, _image(str(service["code"]))]

    def deploy(self, service: dict[str, Any], instance: dict[str, Any]) -> None:
        """NODE_SCHEDULED, then the container (CREATING), then what it does."""
        name = self.container(service["microserviceID"], instance["instance_number"])
        instance["status"] = "NODE_SCHEDULED"
        try:
            _podman(*self.run_args(service, name))
        except subprocess.CalledProcessError as err:
            instance["status"] = "FAILED"
            instance["logs"] = (err.stderr or "")[-LOG_BYTES:]
            return
        with self._lock:
            self.containers[
                (service["microserviceID"], instance["instance_number"])
            ] = name
        instance["status"] = "CREATING"

    def undeploy(self, service_id: str, number: int) -> None:
        with self._lock:
            name = self.containers.pop((service_id, number), None)
        if name is not None:
            _podman("rm", "-f", "-t", "2", name, check=False)

    def report(self, service: dict[str, Any], instance: dict[str, Any]) -> None:
        """What the cluster tells the root of one instance."""
        key = (service["microserviceID"], instance["instance_number"])
        name = self.containers.get(key)
        if name is None:
            return
        found = _podman(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name,
            check=False,
        )  # fmt: skip
        if found.returncode != 0:
            return
        state, code = found.stdout.split()
        if state == "running":
            instance["status"] = "RUNNING"
        elif state == "exited":
            if code != "0":
                instance["status"] = "FAILED"
            else:
                instance["status"] = "COMPLETED" if service.get("one_shot") else "DEAD"
        logs = _podman("logs", name, check=False)
        instance["logs"] = (logs.stdout + logs.stderr)[-LOG_BYTES:]

    def close(self) -> None:
        """Every container it still runs, and the overlay's network."""
        with self._lock:
            names = list(self.containers.values())
            self.containers.clear()
        for name in names:
            _podman("rm", "-f", "-t", "2", name, check=False)
        _podman("network", "rm", "-f", NETWORK, check=False)


def report_loop(
    services: dict[str, dict[str, Any]], worker: PodmanWorker, stop: threading.Event
) -> None:
    """The clusters' periodic reports to the root."""
    while not stop.wait(1.0):
        for service in list(services.values()):
            for instance in list(service.get("instance_list") or []):
                worker.report(service, instance)
            statuses = {i["status"] for i in service.get("instance_list") or []}
            if statuses == {"RUNNING"}:
                service["status"] = "RUNNING"
        time.sleep(0)

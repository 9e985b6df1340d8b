"""Image figures: FL-actor size, cold build, rebuild after a code change, the cost
of adding arm64, and the inference image's size and time to first prediction.

    python bench/images.py [--skip-arm64]

Starts a fresh embedded stack (its own registry) in a temporary FLOPS_HOME. Base
images are taken as present (`flops images bootstrap --platform
linux/amd64,linux/arm64` makes them; the time it took is printed if they were
missing). "Cold" means no package folder for the dependency set: resolution,
the host-side install for the target platform, bytecode, every layer after the
base built and pushed. The Oakestra FLOps addon needs 6 minutes and 2.8 GB per
sklearn image and 4.5x the amd64 time for amd64+arm64.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from _stack import EXAMPLES, Stack, free_port, make_repo, stage_seconds

SANDBOX = [
    "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
]  # fmt: skip


def _settings(stack: Stack):  # type: ignore[no-untyped-def]
    os.environ.update({k: v for k, v in stack.env.items() if k.startswith("FLOPS_")})
    from flops_management.settings import Settings

    return Settings()


def _request(repo: Path, platforms: list[str]):  # type: ignore[no-untyped-def]
    from flops.contract import check_repo
    from flops_management.images.fl_actor import ActorImageRequest

    return ActorImageRequest(
        tenant="bench",
        project="mnist-sklearn",
        commit=uuid.uuid4().hex,  # a new tag: nothing is skipped
        source=str(repo),
        repo_dir=repo,
        dependencies=check_repo(repo).dependencies,
        platforms=platforms,
    )


def _sizes(tag: str, platform: str) -> tuple[float, float]:
    """(unpacked MB as Podman reports it, compressed MB pulled from the registry)."""
    local = f"{tag}-{platform.split('/')[1]}"
    unpacked = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", local],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{tag}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    index = json.loads(raw)
    digest = next(
        m["digest"]
        for m in index["manifests"]
        if m["platform"]["architecture"] == platform.split("/")[1]
    )
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--raw",
             f"docker://{tag.rsplit(':', 1)[0]}@{digest}"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    compressed = sum(layer["size"] for layer in manifest["layers"])
    return int(unpacked) / 1e6, compressed / 1e6


def _build(stack: Stack, repo: Path, platforms: list[str]) -> tuple[float, str]:
    from flops_management.images.fl_actor import FlActorImages

    images = FlActorImages(_settings(stack), lambda _line: None)
    started = time.monotonic()
    info, skipped = images.ensure(_request(repo, platforms))
    assert not skipped
    return time.monotonic() - started, info.reference


def _cold(stack: Stack) -> None:
    """Forget every package folder: the next build installs from scratch."""
    shutil.rmtree(stack.home / "images" / "site", ignore_errors=True)


def bench_fl_actor(stack: Stack, arm64: bool) -> None:
    from flops_management.images.base import BaseImages
    from flops_management.images.registry import Registry

    settings = _settings(stack)
    bases = BaseImages(settings, Registry.from_settings(settings), lambda _l: None)
    platforms = ["linux/amd64", "linux/arm64"] if arm64 else ["linux/amd64"]
    for platform in platforms:
        started = time.monotonic()
        bases.ensure(platform)
        print(f"base image {platform}: ready in {time.monotonic() - started:.1f}s")

    repo = make_repo(
        Path(tempfile.mkdtemp()) / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
    )
    _cold(stack)
    cold, tag = _build(stack, repo, ["linux/amd64"])
    unpacked, compressed = _sizes(tag, "linux/amd64")
    print(
        f"FL-actor image mnist-sklearn linux/amd64: {unpacked:.0f} MB unpacked, "
        f"{compressed:.0f} MB compressed in the registry (Oakestra addon: 2.8 GB)"
    )
    print(
        f"cold build linux/amd64 (base present): {cold:.1f}s (Oakestra addon: ~6 min)"
    )

    manager = repo / "model_manager.py"
    manager.write_text(manager.read_text() + "\n# a change to the user's code only\n")
    subprocess.run(["git", "commit", "-qam", "code change"], cwd=repo, check=True)
    rebuild, _ = _build(stack, repo, ["linux/amd64"])
    print(
        f"rebuild after a change to the user's code only: {rebuild:.1f}s (aim < 20 s)"
    )

    if arm64:
        _cold(stack)
        both, tag = _build(stack, repo, platforms)
        arm_unpacked, arm_compressed = _sizes(tag, "linux/arm64")
        print(
            f"cold build linux/amd64+linux/arm64: {both:.1f}s = {both / cold:.2f}x "
            "amd64 alone (aim < 1.5x; Oakestra addon: 4.5x)"
        )
        print(f"FL-actor image linux/arm64: {arm_unpacked:.0f} MB unpacked, "
              f"{arm_compressed:.0f} MB compressed")  # fmt: skip


def bench_inference(stack: Stack) -> None:
    stack.push_digits(partitions=1)
    repo = make_repo(
        Path(tempfile.mkdtemp()) / "mnist-sklearn", EXAMPLES / "mnist-sklearn"
    )
    project_id = stack.submit(
        {
            "repo": str(repo),
            "rounds": 1,
            "learners": 1,
            "data_tags": ["digits"],
            "post_training": {"build_inference_image": True},
        }
    )
    project = stack.wait(project_id)
    image = project["images"]["inference"]
    unpacked, compressed = _sizes(image["tag"], "linux/amd64")
    print(f"inference image: {unpacked:.0f} MB unpacked, {compressed:.0f} MB "
          f"compressed; inference_image stage "
          f"{stage_seconds(project)['inference_image']:.1f}s")  # fmt: skip
    port = free_port()
    name = f"flops-bench-serve-{port}"
    started = time.monotonic()
    subprocess.run(
        ["podman", "run", "-d", "--name", name, *SANDBOX,
         "-p", f"127.0.0.1:{port}:8080", image["tag"] + "-amd64"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        from sklearn.datasets import load_digits

        features = load_digits().data[:5].astype(np.float32).tolist()
        while True:
            try:
                sent = time.monotonic()
                response = httpx.post(
                    f"http://127.0.0.1:{port}/invocations",
                    json={"inputs": features},
                    timeout=30,
                )
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 300:
                raise TimeoutError("the inference server did not answer in 300 s")
            time.sleep(0.1)
        ready = time.monotonic()
        print(f"inference: container start to first prediction {ready - started:.1f}s; "
              f"the answering POST took {1000 * (ready - sent):.0f} ms")  # fmt: skip
        sent = time.monotonic()
        httpx.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": features})
        warm = 1000 * (time.monotonic() - sent)
        print(f"inference: a warm POST of 5 rows {warm:.0f} ms")
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-arm64", action="store_true")
    args = parser.parse_args()
    stack = Stack.start()
    try:
        bench_fl_actor(stack, arm64=not args.skip_arm64)
        bench_inference(stack)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()

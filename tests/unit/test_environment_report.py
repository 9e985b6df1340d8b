"""What the build log says about an installed environment."""

from __future__ import annotations

from pathlib import Path

from flops_management.pipeline.environment_report import (
    bypassed_wheels,
    describe_environment,
    human_size,
    torch_build,
)

CUDA_PINS = [
    "nvidia-cublas-cu12==12.1.3.1",
    "nvidia-cudnn-cu12==8.9.2.26",
    "nvidia-nccl-cu12==2.18.1",
    "nvidia-nvtx-cu12==12.1.105",
    "torch==2.1.1",
]


def test_the_torch_build_is_named() -> None:
    assert torch_build(CUDA_PINS) == (
        "torch 2.1.1: CUDA build (4 nvidia-* packages: nvidia-cublas-cu12, "
        "nvidia-cudnn-cu12, nvidia-nccl-cu12, ...)"
    )
    assert torch_build(["torch==2.13.0+cpu"]) == "torch 2.13.0+cpu: CPU build"
    assert torch_build(["numpy==2.0.0"]) is None


def test_a_pin_that_passes_over_a_local_wheel_is_named(tmp_path: Path) -> None:
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert bypassed_wheels(CUDA_PINS, [str(tmp_path)]) == [
        "torch==2.1.1 is pinned: the host's local wheel torch 2.13.0+cpu is not "
        "used, the index's build is installed instead"
    ]
    assert bypassed_wheels(["torch==2.13.0+cpu"], [str(tmp_path)]) == []


def test_the_size_is_reported(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blob").write_bytes(b"x" * 3 * 1024 * 1024)
    lines = describe_environment(tmp_path, ["numpy==2.0.0"], [])
    assert lines == ["environment size: 3.0 MB (1 packages)"]
    assert human_size(5 * 1024**3) == "5.0 GB"
    assert human_size(12) == "12 B"

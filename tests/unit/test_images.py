"""Image builds: command lines by equality, Containerfiles against golden files,
the build-failure report, registry references and credentials."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from flops.errors import CommandError, FlopsError
from flops_management.images import commands as cmd
from flops_management.images import containerfiles
from flops_management.images.builder import build_failure
from flops_management.images.fl_actor import actor_tag, repository
from flops_management.images.inference import model_requirements, run_commands
from flops_management.images.registry import ImageInfo, Registry, registry_config
from flops_management.images.site import compile_bytecode, prune
from flops_management.settings import Settings

GOLDEN = Path(__file__).parent.parent / "golden"


def test_build_args_use_chroot_layers_and_the_ca_bundle_as_a_mount() -> None:
    args = cmd.build_args(
        Path("/ctx/Containerfile.arm64"),
        Path("/ctx"),
        "reg/flops/t/p:tag-arm64",
        "linux/arm64",
        ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"),
        timeout_s=600,
    )
    assert args == [
        "timeout", "--kill-after=10", "600",
        "buildah", "build", "--isolation", "chroot", "--layers", "--pull=never",
        "--platform", "linux/arm64",
        "--file", "/ctx/Containerfile.arm64",
        "--tag", "reg/flops/t/p:tag-arm64",
        "--volume",
        "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
        "/ctx",
    ]  # fmt: skip


def test_manifest_and_push_args() -> None:
    transport = ["--tls-verify=false"]
    local = "containers-storage:r:t-arm64"
    assert cmd.manifest_add_args("r:t", local, "linux/arm64") == [
        "buildah", "manifest", "add", "--os", "linux", "--arch", "arm64",
        "r:t", "containers-storage:r:t-arm64",
    ]  # fmt: skip
    assert cmd.manifest_push_args("r:t", "r:t", transport, Path("/d")) == [
        "buildah", "manifest", "push", "--all", "--quiet", "--tls-verify=false",
        "--digestfile", "/d", "r:t", "docker://r:t",
    ]  # fmt: skip


def test_foreign_packages_install_on_the_host_for_the_target_platform() -> None:
    args = cmd.site_install_args(
        "uv", Path("/site"), "linux/arm64", "3.11", ["numpy==2.0"], ["/w"], None
    )
    assert args == [
        "uv", "pip", "install", "--target", "/site",
        "--python-platform", "aarch64-manylinux_2_36", "--python-version", "3.11",
        "--no-progress", "--no-build", "--find-links", "/w", "numpy==2.0",
    ]  # fmt: skip


def test_debootstrap_args() -> None:
    assert cmd.debootstrap_args("linux/arm64", Path("/r"), "http://m/debian") == [
        "debootstrap", "--variant=minbase", "--include=python3,ca-certificates",
        "--arch=arm64", "bookworm", "/r", "http://m/debian",
    ]  # fmt: skip


def _actor(compile_list: list[str]) -> str:
    base = "127.0.0.1:8472/flops/base:bookworm-minbase-r1-arm64"
    return containerfiles.render(
        containerfiles.FL_ACTOR,
        base=base,
        platform="linux/arm64",
        deps_hash="0123456789ab",
        site="site/arm64-0123456789abcdef/",
        user_site="site/arm64-fedcba9876543210/",
        # A package of the user's without an arm64 wheel: built in the image.
        compile_stage=containerfiles.compile_stage(base, {"user-site": compile_list})
        if compile_list
        else "",
        compiled_copy="",
        user_compiled_copy=containerfiles.compiled_copy("user-site")
        if compile_list
        else "",
        flops_version="0.1.0",
        runtime="runtime/fedcba9876543210/",
        commit="6bd7cc994030eda52085be2ba1a0acb5d84882a0",
        repo="builds/mnist-sklearn-tag/repo/",
        title="FLOps FL actor: local/mnist-sklearn",
        source="https://example.org/mnist-sklearn.git",
    )


@pytest.mark.parametrize(
    ("golden", "compile_list"),
    [("fl-actor.Containerfile", []), ("fl-actor-compile.Containerfile", ["pkg==1.0"])],
)
def test_fl_actor_containerfile_matches_golden(
    golden: str, compile_list: list[str]
) -> None:
    assert _actor(compile_list) == (GOLDEN / golden).read_text()


def test_base_containerfile_matches_golden() -> None:
    rendered = containerfiles.render(
        containerfiles.BASE, rootfs="rootfs.tar", description="Debian, linux/amd64"
    )
    assert rendered == (GOLDEN / "base.Containerfile").read_text()


def test_render_names_missing_and_unknown_placeholders() -> None:
    with pytest.raises(FlopsError, match=r"missing \['description'\].*unknown \['x'\]"):
        containerfiles.render(containerfiles.BASE, rootfs="r.tar", x="1")


def test_a_failed_build_names_its_step_and_the_output_tail() -> None:
    output = "\n".join(
        [
            "STEP 1/3: FROM base",
            "STEP 2/3: RUN pip install broken",
            *[f"line {i}" for i in range(30)],
            "error: building at STEP 2/3: exit status 1",
        ]
    )
    err = build_failure("linux/arm64", CommandError(["buildah"], 1, output), 600)
    assert "linux/arm64 build failed at STEP 2/3: RUN pip install broken" in str(err)
    assert "line 29" in str(err) and "line 5" not in str(err)
    timed_out = build_failure("linux/amd64", CommandError(["buildah"], 124, output), 60)
    assert "timed out after 60s at STEP 2/3" in str(timed_out)


def test_tags_name_tenant_project_commit_and_hashes() -> None:
    assert repository("Acme Corp", "MNIST_sklearn") == "flops/acme-corp/mnist_sklearn"
    assert actor_tag("6bd7cc994030eda5", "d" * 64, "f" * 64) == (
        "6bd7cc994030-ddddddddddddd-rffffffff"
    )


def test_registry_defaults_and_pinned_references(tmp_path: Path) -> None:
    local = Registry.from_settings(Settings(home=tmp_path))
    assert local.address == "127.0.0.1:8472" and not local.tls_verify
    assert local.transport_args() == ["--tls-verify=false"]
    remote = Registry.from_settings(Settings(home=tmp_path, registry="reg.example/ml"))
    assert remote.tls_verify
    assert remote.reference("flops/t/p", "abc") == "reg.example/ml/flops/t/p:abc"
    info = ImageInfo("127.0.0.1:8472/flops/t/p:abc", "sha256:00", ["linux/amd64"])
    assert info.pinned == "127.0.0.1:8472/flops/t/p@sha256:00"
    config = json.loads(registry_config(Settings(home=tmp_path)))
    assert config["http"]["addr"] == "127.0.0.1:8472"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(
        tmp_path / "registry" / "data"
    )


def test_registry_credentials_go_to_a_private_auth_file(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        registry="reg.example:5000/ml",
        registry_username="ci",
        registry_password="s3cret",  # type: ignore[arg-type]
    )
    registry = Registry.from_settings(settings)
    assert registry.auth_file is not None
    assert "s3cret" not in " ".join(registry.transport_args())
    assert stat.S_IMODE(registry.auth_file.stat().st_mode) == 0o600
    assert "reg.example:5000" in json.loads(registry.auth_file.read_text())["auths"]


def test_prune_drops_tests_and_headers_but_keeps_numpy_testing(tmp_path: Path) -> None:
    for path in [
        "pandas/tests/test_x.py",
        "pyarrow/include/arrow.h",
        "numpy/testing/__init__.py",
        "numpy/_core/mod.pyi",
        "bin/uv",
        "sklearn/base.py",
    ]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    prune(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert left == ["numpy/testing/__init__.py", "sklearn/base.py"]


def _inference() -> str:
    base = "127.0.0.1:8472/flops/base:bookworm-minbase-r1-amd64"
    return containerfiles.render(
        containerfiles.INFERENCE,
        base=base,
        platform="linux/amd64",
        site="site/amd64-0123456789abcdef/",
        compile_stage="",
        compiled_copy="",
        flops_version="0.1.0",
        runtime="runtime/fedcba9876543210/",
        model="builds/flops/local/mnist-sklearn-inference-v3/model/",
        model_name="local.mnist-sklearn",
        model_version="3",
        title="FLOps inference server: local.mnist-sklearn",
    )


def test_inference_containerfile_matches_golden() -> None:
    assert _inference() == (GOLDEN / "inference.Containerfile").read_text()


def test_the_model_is_served_by_mlflow_skinny_at_its_pinned_version(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements.txt").write_text(
        "mlflow==3.17.2\nscikit-learn>=1.4  # the flavor\n-r extra.txt\nskops>=0.10\n"
    )
    assert model_requirements(tmp_path) == [
        "mlflow-skinny==3.17.2",
        "scikit-learn>=1.4",
        "skops>=0.10",
        "pandas",
        "uvicorn",
    ]
    (tmp_path / "requirements.txt").unlink()
    assert model_requirements(tmp_path) == ["mlflow-skinny", "pandas", "uvicorn"]
    # MLflow 2's scoring server is Flask: only the full package has it.
    (tmp_path / "requirements.txt").write_text("mlflow==2.12.1\nsetuptools==80.9.0\n")
    assert model_requirements(tmp_path) == [
        "mlflow==2.12.1",
        "setuptools==80.9.0",
        "pandas",
        "uvicorn",
    ]


def test_run_lines_tell_podman_about_a_plain_http_registry() -> None:
    lines = run_commands("127.0.0.1:8472/flops/t/p-inference@sha256:00", False)
    assert lines == {
        "podman": "podman run --rm --tls-verify=false -p 8080:8080 "
        "127.0.0.1:8472/flops/t/p-inference@sha256:00",
        "docker": "docker run --rm -p 8080:8080 "
        "127.0.0.1:8472/flops/t/p-inference@sha256:00",
    }


def test_bytecode_is_precompiled_only_for_the_base_images_python(
    tmp_path: Path,
) -> None:
    import importlib.util
    import sys

    (tmp_path / "mod.py").write_text("X = 1\n")
    lines: list[str] = []
    other = Settings(home=tmp_path / "h", base_python="3.99")
    compile_bytecode(tmp_path, other, lines.append)
    assert not (tmp_path / "__pycache__").exists()
    assert "this host runs Python" in lines[0] and "3.99" in lines[0]
    same = f"{sys.version_info.major}.{sys.version_info.minor}"
    compile_bytecode(tmp_path, Settings(home=tmp_path / "h", base_python=same), print)
    pyc = Path(importlib.util.cache_from_source(str(tmp_path / "mod.py")))
    # Flags 0b01: hash-based, unchecked (valid whatever mtime a COPY gives).
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01

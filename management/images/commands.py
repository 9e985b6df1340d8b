"""Command lines for debootstrap, buildah and podman, built by pure functions.

Everything the image builder runs is described here as an argument list, so what
runs is tested by equality (tests/unit/test_image_commands.py). Builds use
`--isolation chroot`, which works without a daemon and inside unprivileged
containers' hosts; `--layers` keeps every step's result for the next build.
"""

from __future__ import annotations

from pathlib import Path

# OCI platform -> (Debian architecture, uv's --python-platform for manylinux on
# bookworm's glibc 2.36, QEMU's binfmt name or None when native-only).
PLATFORMS: dict[str, tuple[str, str, str]] = {
    "linux/amd64": ("amd64", "x86_64-manylinux_2_36", "qemu-x86_64"),
    "linux/arm64": ("arm64", "aarch64-manylinux_2_36", "qemu-aarch64"),
}
BASE_PACKAGES = ("python3", "ca-certificates")


def arch(platform: str) -> str:
    return PLATFORMS[platform][0]


def debootstrap_args(platform: str, rootfs: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        f"--arch={arch(platform)}",
        "bookworm",
        str(rootfs),
        mirror,
    ]


def tar_args(rootfs: Path, archive: Path) -> list[str]:
    return ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."]


def build_args(
    containerfile: Path,
    context: Path,
    tag: str,
    platform: str,
    *,
    ca_bundle: Path | None = None,
    timeout_s: int | None = None,
) -> list[str]:
    args = [
        "buildah",
        "build",
        "--isolation",
        "chroot",
        "--layers",
        "--pull=never",
        "--platform",
        platform,
        "--file",
        str(containerfile),
        "--tag",
        tag,
    ]
    if ca_bundle is not None:
        # pip and apt in RUN steps trust what the host trusts (TLS-intercepting
        # proxies); the bundle is mounted for the step, never stored in a layer.
        args += ["--volume", f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    if timeout_s is not None:
        args = ["timeout", "--kill-after=10", str(timeout_s), *args]
    return [*args, str(context)]


def image_exists_args(reference: str) -> list[str]:
    return [
        "buildah",
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.FromImageID}}",
        reference,
    ]


def pull_args(reference: str, platform: str, transport: list[str]) -> list[str]:
    return ["buildah", "pull", "--quiet", "--platform", platform, *transport, reference]


def tag_args(source: str, target: str) -> list[str]:
    return ["buildah", "tag", source, target]


def push_args(
    local: str, destination: str, transport: list[str], digest_file: Path
) -> list[str]:
    return [
        "buildah",
        "push",
        "--quiet",
        *transport,
        "--digestfile",
        str(digest_file),
        local,
        f"docker://{destination}",
    ]


def manifest_create_args(name: str) -> list[str]:
    return ["buildah", "manifest", "create", name]


def manifest_rm_args(name: str) -> list[str]:
    return ["buildah", "manifest", "rm", name]


def manifest_add_args(name: str, image: str, platform: str) -> list[str]:
    os_name, _, architecture = platform.partition("/")
    return [
        "buildah",
        "manifest",
        "add",
        "--os",
        os_name,
        "--arch",
        architecture,
        name,
        image,
    ]


def manifest_push_args(
    name: str, destination: str, transport: list[str], digest_file: Path
) -> list[str]:
    return [
        "buildah",
        "manifest",
        "push",
        "--all",
        "--quiet",
        *transport,
        "--digestfile",
        str(digest_file),
        name,
        f"docker://{destination}",
    ]


def site_install_args(
    uv: str,
    target: Path,
    platform: str,
    python_version: str,
    requirements: list[str],
    find_links: list[str],
    index_url: str | None,
    no_build: bool = True,
) -> list[str]:
    """Install `requirements` for `platform` into `target` on this host.

    uv picks the target platform's wheels by its tags, so nothing is emulated;
    `--no-build` makes a missing wheel an error instead of a host-side compile,
    which would produce the host's binaries.
    """
    args = [
        uv,
        "pip",
        "install",
        "--target",
        str(target),
        "--python-platform",
        PLATFORMS[platform][1],
        "--python-version",
        python_version,
        "--no-progress",
    ]
    if no_build:
        args.append("--no-build")
    for link in find_links:
        args += ["--find-links", link]
    if index_url:
        args += ["--index-url", index_url]
    return [*args, *requirements]

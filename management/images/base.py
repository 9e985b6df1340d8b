"""Base images, one per platform: pulled when configured, else bootstrapped offline.

`ensure(platform)` makes `<registry>/flops/base:<tag>-<arch>` present both in
the local containers storage (what `buildah build --pull=never` builds on) and in
the registry (what other hosts pull), taking the cheapest way there:

1. the registry has it: pull it into local storage if needed;
2. local storage has it (an earlier FLOPS_HOME, a test session): push it;
3. `base_image` is configured and pullable: pull, retag, push;
4. otherwise debootstrap Debian bookworm (minbase + python3) for the platform,
   slim it, import it as one layer, push it. Foreign platforms need QEMU's
   binfmt handler, which is enabled here when missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flops import subprocesses
from flops.errors import CommandError, FlopsError
from flops_management.file_lock import file_lock
from flops_management.images import commands as cmd
from flops_management.images.containerfiles import BASE, render
from flops_management.images.registry import Registry
from flops_management.settings import Settings

logger = logging.getLogger(__name__)

BASE_REPOSITORY = "flops/base"
# Every base is also kept under this registry-independent name in the local
# containers storage, so a new registry (another FLOPS_HOME or port) gets it
# pushed instead of bootstrapped again.
LOCAL_CACHE = "localhost/flops/base"
# Bump when the bootstrap recipe changes, so old bases are not reused.
RECIPE = "bookworm-minbase-r1"
# What a runtime image never needs; about 140 MB of a fresh minbase.
SLIM_PATHS = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "debootstrap",
)
BINFMT = Path("/proc/sys/fs/binfmt_misc")

Log = Callable[[str], None]


def base_tag(settings: Settings, platform: str) -> str:
    if settings.base_image:
        flavour = (
            "custom-" + hashlib.sha256(settings.base_image.encode()).hexdigest()[:12]
        )
    else:
        flavour = RECIPE
    return f"{flavour}-{cmd.arch(platform)}"


def slim(rootfs: Path) -> int:
    """Remove docs, caches and package lists; keep licences. Returns bytes freed."""
    freed = 0
    targets = [rootfs / path for path in SLIM_PATHS]
    docs = rootfs / "usr/share/doc"
    if docs.is_dir():
        targets += [p for p in docs.rglob("*") if p.is_file() and p.name != "copyright"]
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            freed += sum(f.lstat().st_size for f in target.rglob("*") if f.is_file())
            shutil.rmtree(target)
            target.mkdir()
        elif target.exists():
            freed += target.lstat().st_size
            target.unlink()
    return freed


def ensure_binfmt(platform: str, log: Log) -> None:
    """Register QEMU for a foreign platform's binaries (needs root once per boot)."""
    handler = BINFMT / cmd.PLATFORMS[platform][2]
    if handler.exists() and handler.read_text().startswith("enabled"):
        return
    if not (BINFMT / "status").exists():
        subprocesses.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    log(f"enabling QEMU for {platform} (update-binfmts)")
    subprocesses.run(
        ["update-binfmts", "--enable", cmd.PLATFORMS[platform][2]],
        hint="Install qemu-user-static and binfmt-support (`make system`).",
    )


def unmount_under(path: Path) -> None:
    """Unmount what a killed debootstrap left mounted in its target (/proc, /sys),
    deepest first, so removing the folder never reaches into the host's."""
    root = str(path.resolve())
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1] == root or line.split()[1].startswith(root + "/")
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocesses.run(["umount", "--lazy", mount], check=False)


def remove_workdir(path: Path) -> None:
    if path.exists():
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


def native_platform() -> str:
    import platform as host

    return {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}.get(
        host.machine(), f"linux/{host.machine()}"
    )


def in_local_storage(reference: str) -> bool:
    """Whether Buildah's container storage holds `reference`; a storage Buildah
    cannot read is an error of its own (not a missing image to rebuild)."""
    output = subprocesses.run(cmd.image_exists_args(reference), check=False)
    if "image not known" in output:
        return False
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    if not errors:
        return True
    raise FlopsError(
        f"Buildah cannot read its container storage to look for {reference}: "
        + errors[-1],
        hint="Buildah and the host's Podman must share one storage and network "
        "backend (for the compose install: /var/lib/containers, netavark).",
    )


class BaseImages:
    def __init__(self, settings: Settings, registry: Registry, log: Log) -> None:
        self.settings = settings
        self.registry = registry
        self.log = log

    def reference(self, platform: str) -> str:
        return self.registry.reference(
            BASE_REPOSITORY, base_tag(self.settings, platform)
        )

    def _local(self, reference: str) -> bool:
        return in_local_storage(reference)

    @contextlib.contextmanager
    def _bootstrap_lock(self, platform: str) -> Iterator[None]:
        """A known platform, held for one caller: two jobs (or a job and a
        prebuild) asking for the same new base would both bootstrap it, in the
        same work folder."""
        if platform not in cmd.PLATFORMS:
            raise FlopsError(
                f"Unsupported platform {platform!r}.",
                hint=f"Use one of {', '.join(cmd.PLATFORMS)}.",
            )
        with file_lock(
            self.settings.images_dir / "base" / f"{cmd.arch(platform)}.lock"
        ):
            yield

    def ensure(self, platform: str) -> str:
        """The base reference for `platform`, present locally and in the registry."""
        with self._bootstrap_lock(platform):
            return self._ensure(platform)

    def ensure_local(self, platform: str) -> str:
        """The base in this host's container storage only (`localhost/flops/
        base:<tag>`), with no registry: what the compose install builds on."""
        with self._bootstrap_lock(platform):
            cached = f"{LOCAL_CACHE}:{base_tag(self.settings, platform)}"
            if self._local(cached):
                self.log(f"base {platform}: found in local storage ({cached})")
            elif not (
                self.settings.base_image and self._pull_configured(platform, cached)
            ):
                self._bootstrap(platform, cached)
        return cached

    def _ensure(self, platform: str) -> str:
        reference = self.reference(platform)
        cached = f"{LOCAL_CACHE}:{base_tag(self.settings, platform)}"
        local = self._local(reference)
        if not local and self._local(cached):
            subprocesses.run(cmd.tag_args(cached, reference))
            self.log(f"base {platform}: found in local storage ({cached})")
            local = True
        if self.registry.find(reference) is not None:
            if not local:
                self.log(f"base {platform}: pulling {reference}")
                subprocesses.run(
                    cmd.pull_args(reference, platform, self.registry.transport_args()),
                    timeout=self.settings.build_timeout,
                )
            self.log(f"base {platform}: {reference} present, skipped")
        else:
            if not local and not (
                self.settings.base_image and self._pull_configured(platform, reference)
            ):
                self._bootstrap(platform, reference)
            self._push(reference)
        subprocesses.run(cmd.tag_args(reference, cached))
        return reference

    def _pull_configured(self, platform: str, reference: str) -> bool:
        image = str(self.settings.base_image)
        self.log(f"base {platform}: pulling the configured base image {image}")
        try:
            subprocesses.run(
                cmd.pull_args(image, platform, []), timeout=self.settings.build_timeout
            )
        except CommandError as err:
            reason = err.output.strip().splitlines()[-1] if err.output.strip() else ""
            self.log(
                f"base {platform}: {image} is not reachable ({reason}); bootstrapping"
            )
            return False
        subprocesses.run(cmd.tag_args(image, reference))
        return True

    def _bootstrap(self, platform: str, reference: str) -> None:
        if platform != native_platform():
            ensure_binfmt(platform, self.log)
        workdir = self.settings.images_dir / "base" / cmd.arch(platform)
        remove_workdir(workdir)
        rootfs = workdir / "rootfs"
        rootfs.mkdir(parents=True)
        started = time.monotonic()
        self.log(
            f"base {platform}: bootstrapping Debian bookworm (minbase + python3) "
            f"from {self.settings.debian_mirror}"
            + ("" if platform == native_platform() else " under QEMU")
        )
        try:
            subprocesses.run(
                cmd.debootstrap_args(platform, rootfs, self.settings.debian_mirror),
                timeout=self.settings.build_timeout,
                on_line=self._progress(platform),
                hint="debootstrap needs root and the Debian mirror "
                "(FLOPS_DEBIAN_MIRROR); or set FLOPS_BASE_IMAGE to a pullable image.",
            )
            freed = slim(rootfs)
            self.log(f"base {platform}: slimmed by {freed / 1e6:.0f} MB")
            subprocesses.run(cmd.tar_args(rootfs, workdir / "rootfs.tar"))
            remove_workdir(rootfs)
            containerfile = workdir / "Containerfile"
            containerfile.write_text(
                render(
                    BASE,
                    rootfs="rootfs.tar",
                    description=f"Debian bookworm minbase + python3, {platform}",
                )
            )
            subprocesses.run(
                cmd.build_args(containerfile, workdir, reference, platform),
                timeout=self.settings.build_timeout,
            )
        finally:
            remove_workdir(workdir)
        self.log(f"base {platform}: built in {time.monotonic() - started:.0f}s")

    def _progress(self, platform: str) -> Log:
        seen: set[str] = set()

        def log(line: str) -> None:
            # debootstrap prints a line per package; show its phases only.
            phase = line.split(" ", 2)[1] if line.startswith("I: ") else ""
            if phase and phase not in seen:
                seen.add(phase)
                self.log(f"base {platform}: {line[3:].strip()}")

        return log

    def _push(self, reference: str) -> None:
        digest_file = self.settings.images_dir / "base.digest"
        digest_file.parent.mkdir(parents=True, exist_ok=True)
        subprocesses.run(
            cmd.push_args(
                reference, reference, self.registry.transport_args(), digest_file
            ),
            timeout=self.settings.build_timeout,
        )
        self.log(f"base: pushed {reference}")

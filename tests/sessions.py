"""`make test`: the whole suite as two pytest sessions at once, each with its
own stack (service, MLflow, registry, FLOPS_HOME).

CI machines have two cores and the suite mostly waits: on package downloads,
on image builds, on Flower's polls (a SuperNode sleeps 3 s between empty
pulls). Run one after the other the suite took 69 minutes on CI; side by side
the waits overlap. The split keeps what the two cannot share apart:

- `containers`: every module that builds images (one base-image build per
  platform in the host's container storage; conftest.BASE_USERS) or puts
  devices in network namespaces (one site link per host; conftest.SITE_USERS),
  and, to even the two out, BALANCE;
- `processes`: the rest (unit, security, lifecycle, pinned repos), which start
  no container and touch no host link.

Per module, on the CI machine, one after the other (`--durations=0`): the
container modules 29 min, BALANCE 8 min, the rest 36 min.

Each session's output goes to `.cache/test-<name>.log` as it runs; `containers`
is also shown live, and each log is printed whole when its session ends. The
exit status is the first failing session's. Arguments are passed to both
(`make test PYTEST_ARGS=...`); `python tests/sessions.py -k expr` works too.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "tests" / "integration"


# Local-backend modules run beside the container ones, for time's sake only.
BALANCE = {"test_e2e_bad_input", "test_e2e_examples"}


def _container_modules() -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import BASE_USERS, SITE_USERS

    names = sorted(set(BASE_USERS) | SITE_USERS | BALANCE)
    return [INTEGRATION / f"{name}.py" for name in names]


def session_args(extra: list[str]) -> dict[str, list[str]]:
    """Each session's pytest arguments (tested in tests/unit/test_sessions.py)."""
    containers = _container_modules()
    common = ["-p", "no:cacheprovider", *extra]
    return {
        "containers": [
            *map(str, containers),
            "--basetemp=/tmp/flops-tests-containers",
            *common,
        ],
        "processes": [
            str(ROOT / "tests"),
            *(f"--ignore={module}" for module in containers),
            "--basetemp=/tmp/flops-tests-processes",
            *common,
        ],
    }


def _run(name: str, args: list[str], live: bool, codes: dict[str, int]) -> None:
    log = ROOT / ".cache" / f"test-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as output:
        proc = subprocess.Popen(
            # -u: each line as pytest writes it, not 8 KB at a time.
            [sys.executable, "-u", "-m", "pytest", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            output.write(line)
            output.flush()
            if live:
                print(line, end="", flush=True)
        codes[name] = proc.wait()
    minutes = (time.monotonic() - started) / 60
    print(
        f"\n===== session {name}: exit {codes[name]} after {minutes:.1f} min "
        f"({log.relative_to(ROOT)}) =====",
        flush=True,
    )
    if not live:
        print(log.read_text(), flush=True)


def main(extra: list[str]) -> int:
    codes: dict[str, int] = {}
    threads = [
        threading.Thread(target=_run, args=(name, args, name == "containers", codes))
        for name, args in session_args(extra).items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return next((code for code in codes.values() if code), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

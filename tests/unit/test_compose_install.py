"""`flops compose prepare`'s pure parts, and docker-compose.yml against them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from flops_management.compose_install import (
    DEFAULTS,
    GENERATED_SECRETS,
    environment,
    folder_digest,
    point_scripts_at,
    read_env,
    render_env,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/flops/base:bookworm-minbase-r1-amd64"


def test_secrets_are_made_once_and_kept(tmp_path: Path) -> None:
    first = environment({}, BASE, {})
    for name in GENERATED_SECRETS:
        assert len(first[name]) >= 48
    assert len({first[name] for name in GENERATED_SECRETS}) == len(GENERATED_SECRETS)
    env_file = tmp_path / ".env"
    env_file.write_text(render_env(first))
    again = environment(read_env(env_file), BASE, {"MLFLOW_PORT": "5100"})
    assert {n: again[n] for n in GENERATED_SECRETS} == {
        n: first[n] for n in GENERATED_SECRETS
    }
    assert again["MLFLOW_PORT"] == "5100"
    assert again["FLOPS_BASE_IMAGE"] == BASE


def test_the_registry_follows_its_port_unless_set() -> None:
    assert environment({}, BASE, {"REGISTRY_PORT": "6000"})["FLOPS_REGISTRY"] == (
        "127.0.0.1:6000"
    )
    chosen = environment({}, BASE, {"FLOPS_REGISTRY": "registry.example:443/flops"})
    assert chosen["FLOPS_REGISTRY"] == "registry.example:443/flops"


def test_the_env_file_reads_back_as_written(tmp_path: Path) -> None:
    values = environment({}, BASE, {})
    path = tmp_path / ".env"
    path.write_text(render_env(values) + "\n# a comment\n\n")
    assert read_env(path) == values


def test_console_scripts_run_with_the_images_python(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "mlflow"
    script.write_text("#!/work/.venv/bin/python3\nimport sys\nprint(sys.argv)\n")
    data = tmp_path / "bin" / "data.txt"
    data.write_text("not a script\n")
    point_scripts_at(tmp_path)
    assert script.read_text() == "#!/usr/bin/python3\nimport sys\nprint(sys.argv)\n"
    assert data.read_text() == "not a script\n"


def test_the_digest_follows_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.py").write_text("x = 1\n")
    first = folder_digest(tmp_path)
    assert folder_digest(tmp_path) == first
    (tmp_path / "a" / "m.py").write_text("x = 2\n")
    assert folder_digest(tmp_path) != first


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def test_every_variable_the_compose_file_reads_is_prepared() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    prepared = set(environment({}, BASE, {})) | {"FLOPS_SITE_DIGEST"}
    optional = {
        name
        for name in _variables(compose)
        if re.search(r"\$\{" + name + r":-", compose)
    }
    assert _variables(compose) - prepared - optional == set()


def test_no_credential_has_a_default_in_the_compose_file() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for name in GENERATED_SECRETS:
        assert re.search(r"\$\{" + name + r":-", compose) is None, name
        assert name not in DEFAULTS


def test_the_management_service_runs_no_local_learners() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    management = services["management"]["environment"]
    assert management["FLOPS_PROFILE"] == "production"
    assert management["FLOPS_ORCHESTRATORS"].startswith("${FLOPS_ORCHESTRATORS:?")
    assert "local" not in DEFAULTS["FLOPS_ORCHESTRATORS"]
    for name, service in services.items():
        build = service.get("build")
        if build:  # every image built here starts from the FL-actor images' base
            containerfile = (ROOT / build["dockerfile"]).read_text()
            assert "FROM ${FLOPS_BASE_IMAGE}" in containerfile, name

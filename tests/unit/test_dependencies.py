from pathlib import Path

import pytest

from flops.dependencies import read_dependencies
from flops.errors import ContractError


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_requirements_txt_with_includes_comments_and_options(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements.txt": "# ML\nnumpy>=1.26  # arrays\n-r more/extra.txt\n"
            "--index-url https://x\n\n",
            "more/extra.txt": "scikit-learn==1.5.0\nflops-utils==0.2.3\n",
        },
    )
    deps = read_dependencies(tmp_path)
    assert deps.source == "requirements.txt"
    # flops-utils is provided by the FLOps runtime and dropped
    assert deps.requirements == ("numpy>=1.26", "scikit-learn==1.5.0")
    assert any("--index-url" in note for note in deps.notes)


def test_pyproject_dependencies(tmp_path: Path) -> None:
    write(
        tmp_path, {"pyproject.toml": '[project]\nname="x"\ndependencies=["torch>=2"]\n'}
    )
    assert read_dependencies(tmp_path).requirements == ("torch>=2",)


def test_tool_only_pyproject_is_not_a_dependency_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": "[tool.ruff]\nline-length = 88\n",
            "conda.yml": "dependencies:\n  - python=3.10\n  - pip:\n"
            "    - numpy==1.26.4\n",
        },
    )
    deps = read_dependencies(tmp_path)
    assert deps.source == "conda.yml"
    assert deps.requirements == ("numpy==1.26.4",)


def test_conda_pip_section_is_honoured_and_conda_packages_noted(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "conda.yaml": "name: env\ndependencies:\n  - python=3.10\n"
            "  - scipy=1.13\n  - pip:\n    - scikit-learn==1.4.2\n"
        },
    )
    deps = read_dependencies(tmp_path)
    assert deps.requirements == ("scikit-learn==1.4.2",)
    assert any("conda package 'scipy=1.13' is ignored" in note for note in deps.notes)


def test_invalid_requirement_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "numpy\nscikit-learn>>1\n"})
    with pytest.raises(ContractError) as err:
        read_dependencies(tmp_path)
    assert (
        "requirements.txt line 2: 'scikit-learn>>1' is not a valid requirement"
        in str(err.value)
    )


def test_missing_dependency_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="no dependency file"):
        read_dependencies(tmp_path)


def test_include_outside_the_repo_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"repo/requirements.txt": "-r ../secret.txt\n", "secret.txt": "numpy\n"},
    )
    with pytest.raises(ContractError, match="is not in the repo"):
        read_dependencies(tmp_path / "repo")


def test_digest_ignores_order_and_spelling(tmp_path: Path) -> None:
    a = write(tmp_path / "a", {"requirements.txt": "Scikit_Learn>=1.4\nnumpy\n"})
    b = write(tmp_path / "b", {"requirements.txt": "numpy\nscikit-learn>=1.4\n"})
    c = write(tmp_path / "c", {"requirements.txt": "numpy\nscikit-learn>=1.5\n"})
    assert read_dependencies(a).digest() == read_dependencies(b).digest()
    assert read_dependencies(a).digest() != read_dependencies(c).digest()

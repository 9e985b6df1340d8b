import shutil
from pathlib import Path

import pytest

from flops.contract import check_repo
from flops.errors import ContractError
from tests.helpers import EXAMPLES, ROOT

GOOD_MODEL = """
class ModelManager:
    def set_model_data(self): ...
    def get_model(self): ...
    def get_model_parameters(self): ...
    def set_model_parameters(self, parameters): ...
    def fit_model(self): ...
    def evaluate_model(self): ...
"""
GOOD_DATA = "class DataManager:\n    def get_data(self): ...\n"


def repo(tmp_path: Path, **files: str) -> Path:
    defaults = {
        "model_manager.py": GOOD_MODEL,
        "data_manager.py": GOOD_DATA,
        "requirements.txt": "numpy\n",
    }
    for name, text in {**defaults, **files}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("example", ["mnist-sklearn", "pytorch-cnn"])
def test_examples_and_template_follow_the_contract(example: str) -> None:
    check_repo(EXAMPLES / example)
    check_repo(ROOT / "templates" / "ml-repo")


def test_missing_model_manager(tmp_path: Path) -> None:
    (repo(tmp_path) / "model_manager.py").unlink()
    with pytest.raises(ContractError) as err:
        check_repo(tmp_path)
    assert (
        "model_manager.py is missing at the repo root (expected class ModelManager"
        in str(err.value)
    )


def test_each_missing_method_is_named(tmp_path: Path) -> None:
    repo(
        tmp_path,
        **{"model_manager.py": "class ModelManager:\n    def get_model(self): ...\n"},
    )
    with pytest.raises(ContractError) as err:
        check_repo(tmp_path)
    problems = err.value.problems
    for method in (
        "set_model_data",
        "fit_model",
        "evaluate_model",
        "set_model_parameters",
    ):
        assert f"model_manager.py: ModelManager has no method {method}()" in problems
    assert not any("get_model()" in p and "no method" in p for p in problems)


def test_wrong_arity_is_reported_with_line(tmp_path: Path) -> None:
    repo(
        tmp_path,
        **{
            "model_manager.py": GOOD_MODEL.replace(
                "def fit_model(self)", "def fit_model(self, epochs)"
            )
        },
    )
    with pytest.raises(ContractError) as err:
        check_repo(tmp_path)
    assert (
        "model_manager.py line 7: ModelManager.fit_model() must accept no arguments"
        in str(err.value)
    )


def test_syntax_error_and_missing_class(tmp_path: Path) -> None:
    repo(
        tmp_path,
        **{"model_manager.py": "class ModelManager(:\n", "data_manager.py": "x = 1\n"},
    )
    with pytest.raises(ContractError) as err:
        check_repo(tmp_path)
    assert "model_manager.py line 1: syntax error" in str(err.value)
    assert "data_manager.py: no top-level class DataManager" in str(err.value)


def test_methods_inherited_from_a_class_in_the_repo(tmp_path: Path) -> None:
    base = GOOD_MODEL.replace("class ModelManager:", "class Base:")
    repo(
        tmp_path,
        **{
            "base.py": base,
            "model_manager.py": "from base import Base\n\n"
            "class ModelManager(Base):\n    pass\n",
        },
    )
    check_repo(tmp_path)


def test_methods_from_an_unknown_base_are_noted_not_failed(tmp_path: Path) -> None:
    repo(
        tmp_path,
        **{
            "model_manager.py": "from somelib import Managed\n\n"
            "class ModelManager(Managed):\n    pass\n"
        },
    )
    report = check_repo(tmp_path)
    assert any("assumed inherited from Managed" in note for note in report.notes)


def test_data_manager_without_prepare_data_starts(tmp_path: Path) -> None:
    """`_prepare_data()` is the Oakestra template's convention, not the contract:
    a DataManager deriving from the template without it passes the check and is
    constructed (it was an abstract method that failed only on the learners)."""
    from flops_utils.ml_repo_templates import DataManagerTemplate

    class DataManager(DataManagerTemplate):
        def get_data(self) -> tuple[int, int]:
            return 1, 2

    assert DataManager().get_data() == (1, 2)
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "mnist-sklearn", repo)
    source = (repo / "data_manager.py").read_text()
    (repo / "data_manager.py").write_text(
        source.replace("self._prepare_data()", "self._load()").replace(
            "def _prepare_data(self)", "def _load(self)"
        )
    )
    check_repo(repo)

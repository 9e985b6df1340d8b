"""Exporting the final global model as an MLflow model with flavor and signature.

The aggregator holds the final parameters but no data; a learner holds data but
must not send it. So a learner derives the model *signature* (column types and
tensor shapes, no values) from a few of its own inputs and sends only that; the
aggregator logs the model with it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from flops.errors import ConfigError

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 5

# What MLflow needs beside a framework to log (and later load) its models: sklearn
# models are saved with skops, MLflow's safe (no pickle) format for them.
EXPORT_EXTRAS: dict[str, tuple[str, ...]] = {"scikit-learn": ("skops>=0.10",)}


def export_requirements(requirements: list[str] | tuple[str, ...]) -> list[str]:
    """Packages to add to an environment so its models can be logged."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names = {canonicalize_name(Requirement(req).name) for req in requirements}
    extras = [extra for name in names for extra in EXPORT_EXTRAS.get(name, ())]
    return sorted(
        e for e in extras if canonicalize_name(Requirement(e).name) not in names
    )


def detect_flavor(model: Any) -> str:
    """sklearn, pytorch or keras, from the model object's type."""
    for klass in type(model).__mro__:
        root = klass.__module__.split(".")[0]
        if root == "sklearn":
            return "sklearn"
        if root == "torch":
            return "pytorch"
        if root in {"keras", "tensorflow", "tf_keras"}:
            return "keras"
    raise ConfigError(
        f"Cannot tell the model flavor of {type(model).__module__}."
        f"{type(model).__name__}.",
        hint="Set model_flavor in flops.toml (sklearn, pytorch or keras).",
    )


def _to_numpy(value: Any) -> np.ndarray | None:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "to_numpy") and hasattr(value, "columns"):
        return None  # DataFrames are handled by the caller, keeping column names
    if isinstance(value, np.ndarray) and value.ndim >= 2 and value.dtype != object:
        return value
    return None


def _first_batch_inputs(loader: Any) -> Any:
    batch = next(iter(loader))
    if isinstance(batch, list | tuple):
        return batch[0]
    if isinstance(batch, dict):
        return next(iter(batch.values()))
    return batch


def input_sample(manager: Any) -> Any | None:
    """A few model inputs from the learner's data, found without extra user code.

    `ModelManager.get_input_example()` wins when the repo defines it. Otherwise
    the manager's attributes are searched in the order the repo set them: the first
    2-D+ array (`x_train`), DataFrame, or data loader (`trainloader`) provides it.
    """
    hook = getattr(manager, "get_input_example", None)
    if callable(hook):
        return hook()
    for name, value in vars(manager).items():
        if name.lower().startswith("y"):
            continue
        if hasattr(value, "columns") and hasattr(value, "head"):
            return value.head(SAMPLE_ROWS)
        array = _to_numpy(value)
        if array is not None:
            return array[:SAMPLE_ROWS]
        if hasattr(value, "dataset") and hasattr(value, "__iter__"):
            inputs = _first_batch_inputs(value)
            array = _to_numpy(inputs)
            if array is not None:
                return array[:SAMPLE_ROWS]
    return None


def predict(flavor: str, model: Any, sample: Any) -> Any:
    if flavor == "pytorch":
        import torch

        model.eval()
        with torch.no_grad():
            tensor = torch.as_tensor(np.asarray(sample), dtype=torch.float32)
            return model(tensor).detach().cpu().numpy()
    return model.predict(sample)


def _tensor_schema_json(value: Any) -> str | None:
    """MLflow's JSON for a tensor schema of `value`, batch dimension left open.

    Written directly in MLflow's signature format: building it with MLflow would
    import mlflow.models (seconds of start-up in every learner) and its schema
    inference needs scipy, which the learner runtime does not carry.
    """
    array = value if isinstance(value, np.ndarray) else _to_numpy(value)
    if array is None:
        array = np.asarray(value)
    if array.dtype == object or array.ndim == 0:
        return None
    spec = {"dtype": array.dtype.name, "shape": [-1, *array.shape[1:]]}
    return json.dumps([{"type": "tensor", "tensor-spec": spec}])


def _is_dataframe(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "dtypes")


def signature_for(manager: Any, flavor: str) -> dict[str, str] | None:
    """The MLflow signature as a dict of JSON strings; None (and why, logged).

    A DataFrame sample keeps its column names and types (a column-based schema,
    so MLflow matches a request's columns by name); arrays give tensor schemas.
    """
    sample = input_sample(manager)
    if sample is None:
        logger.warning(
            "No model signature: no input sample found on the ModelManager; "
            "define ModelManager.get_input_example() to provide one."
        )
        return None
    if flavor == "pytorch":
        sample = np.asarray(sample, dtype=np.float32)
    output = predict(flavor, manager.get_model(), sample)
    if not _is_dataframe(sample):
        inputs, outputs = _tensor_schema_json(sample), _tensor_schema_json(output)
        if inputs is not None and outputs is not None:
            return {"inputs": inputs, "outputs": outputs}
    from mlflow.models import infer_signature  # DataFrames and the like

    result: dict[str, str] = infer_signature(sample, output).to_dict()
    if '"any"' in result.get("inputs", ""):
        logger.warning("No model signature: MLflow could not infer the input schema.")
        return None
    return result


def _pickle_repo_modules_by_value(repo: Path) -> None:
    """Make cloudpickle embed classes defined in the repo (a torch `nn.Module`
    subclass in model_manager.py, a custom sklearn transformer) instead of
    referencing their module, so the model loads where the repo is absent."""
    import cloudpickle

    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(repo):
            cloudpickle.register_pickle_by_value(module)


def installed_requirements(requirements: list[str] | tuple[str, ...]) -> list[str]:
    """`name==version` for each requirement as installed here.

    Recorded with the model, so its environment is the one the user's code ran
    in, not the ranges the repo asked for (`scikit-learn>=1.4` is recorded as
    the version that trained it). Direct references stay as written.
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for spec in requirements:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        if req.url:
            pins[req.name.lower()] = spec
            continue
        try:
            pins[req.name.lower()] = f"{req.name}=={version(req.name)}"
        except PackageNotFoundError:
            pins[req.name.lower()] = spec  # not installed: say what was asked
    return sorted(pins.values(), key=str.lower)


def loading_needs() -> list[str]:
    """What loading a model saved here needs beyond the repo's own packages.

    NumPy, at the version that trained it: a repo rarely names it, and a newer
    major can break the framework (torch 2.1 cannot run on NumPy 2). MLflow 2
    imports pkg_resources, which fresh environments no longer get from
    setuptools unless asked.
    """
    import mlflow

    needs = ["numpy"]
    if int(mlflow.__version__.split(".")[0]) < 3:
        needs.append("setuptools")
    return needs


def _flavor_module(flavor: str, model: Any) -> Any:
    """MLflow's module for the flavor; Keras 2 models (tf.keras) are saved by
    `mlflow.tensorflow`, since `mlflow.keras` of MLflow 3 handles Keras 3 only."""
    import importlib

    if flavor == "keras":
        try:
            import keras  # type: ignore[import-not-found]

            major = int(str(keras.__version__).split(".")[0])
        except ImportError:
            major = 2
        if major < 3 or type(model).__module__.startswith("tf_keras"):
            return importlib.import_module("mlflow.tensorflow")
    return importlib.import_module(f"mlflow.{flavor}")


def save_model(
    flavor: str,
    model: Any,
    signature: dict[str, str] | None,
    *,
    path: Path,
    repo: Path,
    requirements: list[str],
) -> list[str]:
    """Save the model with its flavor as an MLflow model folder at `path`.

    Runs where the user's code runs (the model worker), with that environment's
    MLflow and framework, so the saved model is the one its recorded
    requirements load. Returns notes on choices made (serialization fallbacks).
    """
    import inspect
    import shutil

    from mlflow.models import ModelSignature

    _pickle_repo_modules_by_value(repo)
    module = _flavor_module(flavor, model)
    sig = ModelSignature.from_dict(signature) if signature else None
    pins = installed_requirements(
        [*requirements, *export_requirements(requirements), *loading_needs()]
    )
    kwargs: dict[str, Any] = {"signature": sig, "pip_requirements": pins}
    notes: list[str] = []
    accepts = inspect.signature(module.save_model).parameters

    def save(**extra: Any) -> list[str]:
        shutil.rmtree(path, ignore_errors=True)
        module.save_model(path=str(path), **kwargs, **extra)
        return notes

    if flavor == "sklearn":
        kwargs["sk_model"] = model
        if "skops" in getattr(module, "SUPPORTED_SERIALIZATION_FORMATS", ()):
            try:
                return save(serialization_format="skops")
            except Exception as err:  # skops refuses classes it does not know
                notes.append(f"skops cannot save this model ({err}): cloudpickle")
        kwargs["pip_requirements"] = installed_requirements([*pins, "cloudpickle"])
        return save(serialization_format="cloudpickle")
    if flavor == "pytorch":
        kwargs["pytorch_model"] = model
        example = synthetic_example(sig)
        if example is not None and "serialization_format" in accepts:
            try:
                return save(
                    input_example=example[0] if len(example) == 1 else example,
                    serialization_format="pt2",
                )
            except Exception as err:  # torch.export cannot trace every model
                notes.append(f"torch.export failed ({err}); saved with pickle")
        if "serialization_format" not in accepts:  # MLflow 2 pickles by default
            return save()
        notes.append(
            "The model is saved with pickle: MLflow 3 loads it only with "
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true"
        )
        return save(serialization_format="pickle")
    kwargs["model"] = model
    return save()


def synthetic_example(signature: Any | None) -> tuple[np.ndarray, ...] | None:
    """Zeros shaped like the signature's tensor inputs, batch of 2.

    torch.export (MLflow's `pt2` format) traces the model on an example; values do
    not matter to the trace, so none of a learner's data is needed. A batch of 2
    keeps the batch dimension dynamic (torch.export fixes dimensions of size 1).
    """
    if (
        signature is None
        or signature.inputs is None
        or not signature.inputs.is_tensor_spec()
    ):
        return None
    arrays = []
    for spec in signature.inputs.inputs:
        shape = tuple(2 if dim == -1 else dim for dim in spec.shape)
        arrays.append(np.zeros(shape, dtype=spec.type))
    return tuple(arrays)

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


def signature_for(manager: Any, flavor: str) -> dict[str, str] | None:
    """The MLflow signature as a dict of JSON strings; None (and why, logged)."""
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


def log_model(
    flavor: str,
    model: Any,
    signature: dict[str, str] | None,
    *,
    repo: Path,
    pip_requirements: list[str],
) -> Any:
    """Log the model to the active MLflow run; return MLflow's ModelInfo.

    `pip_requirements` are the repo's own (known exactly, so MLflow need not infer
    them in a subprocess).
    """
    import importlib

    from mlflow.models import ModelSignature

    _pickle_repo_modules_by_value(repo)
    module = importlib.import_module(f"mlflow.{flavor}")
    sig = ModelSignature.from_dict(signature) if signature else None
    requirements = [*pip_requirements, *export_requirements(pip_requirements)]
    kwargs: dict[str, Any] = {
        "name": "model",
        "signature": sig,
        "pip_requirements": requirements,
    }
    if flavor == "sklearn":
        kwargs["sk_model"] = model
        try:
            return module.log_model(**kwargs)
        except Exception as err:  # skops refuses classes it does not know
            logger.warning(
                "skops cannot save this model (%s); saving it with cloudpickle", err
            )
            kwargs["serialization_format"] = "cloudpickle"
            kwargs["pip_requirements"] = [*pip_requirements, "cloudpickle"]
            return module.log_model(**kwargs)
    if flavor == "pytorch":
        kwargs["pytorch_model"] = model
        example = synthetic_example(sig)
        if example is not None:
            try:
                return module.log_model(
                    **kwargs,
                    input_example=example[0] if len(example) == 1 else example,
                    serialization_format="pt2",
                )
            except Exception as err:  # torch.export cannot trace every model
                logger.warning(
                    "torch.export failed (%s); saving the model with pickle", err
                )
        logger.warning(
            "The model is saved with pickle: loading it needs "
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true"
        )
        return module.log_model(**kwargs, serialization_format="pickle")
    kwargs["model"] = model
    return module.log_model(**kwargs)


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

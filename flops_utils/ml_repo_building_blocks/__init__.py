"""Building blocks an ML repo calls; FLOps provides the real implementations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flops import data as _data

if TYPE_CHECKING:
    import datasets


def load_dataset() -> datasets.Dataset:
    """This learner's local data for the project's data tags, as one Dataset."""
    return _data.load_dataset()


__all__ = ["load_dataset"]

"""Datasets: the interface (:mod:`.base`) and the built-in providers (``synthetic``)."""

from robench.data.base import ClipDataset, DatasetProvider, TensorClipDataset, iterate_batches, to_model_inputs
from robench.data.synthetic import SyntheticDataset

__all__ = ["ClipDataset", "DatasetProvider", "SyntheticDataset", "TensorClipDataset", "iterate_batches",
           "to_model_inputs"]

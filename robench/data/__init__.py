"""Datasets: the interface (:mod:`.base`), the synthetic dataset and prepared real datasets (NTU, iMiGUE)."""

from robench.data.base import ClipDataset, DatasetProvider, TensorClipDataset, iterate_batches, to_model_inputs
from robench.data.imigue import IMiGUE
from robench.data.manifest import ManifestDataset
from robench.data.ntu import NTU60, NTU120
from robench.data.synthetic import SyntheticDataset

__all__ = ["ClipDataset", "DatasetProvider", "IMiGUE", "ManifestDataset", "NTU60", "NTU120", "SyntheticDataset", "TensorClipDataset", "iterate_batches",
           "to_model_inputs"]

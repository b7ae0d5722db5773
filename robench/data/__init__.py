"""Datasets: the interface (:mod:`.base`), the synthetic dataset and prepared real datasets (NTU, iMiGUE)."""

from robench.data.base import ClipDataset, DatasetProvider, TensorClipDataset, to_model_inputs
from robench.data.imigue import IMiGUE
from robench.data.manifest import ManifestDataset
from robench.data.ntu import NTU60, NTU120
from robench.data.synthetic import SyntheticDataset

__all__ = ["NTU60", "NTU120", "ClipDataset", "DatasetProvider", "IMiGUE", "ManifestDataset", "SyntheticDataset",
           "TensorClipDataset", "to_model_inputs"]

"""The model zoo: leaderboard entries' trained weights, fetched once, verified, and loaded into the evaluated model.

One job per module: :mod:`.manifest` (which weights file is which entry's model: digest, format, source, the model to
build), :mod:`.fetch` (a path, an http(s) URL or an ``hf://`` address into the content-addressed cache, digest checked
before anything is kept), :mod:`.hub` (the Hugging Face Hub, an optional extra), :mod:`.weights` (reading safetensors
and ``torch.load(weights_only=True)`` files after their digest is checked), :mod:`.load` (the architecture the
leaderboard evaluated, with the weights), :mod:`.get` (``robench leaderboard get``), :mod:`.export` (how the shipped
weights were made) and :mod:`.errors`.

``robench.load_model("synthetic", "amr")`` and ``robench leaderboard get synthetic amr`` use the weights robench ships
for the synthetic track's eight entries (``robench/zoo/weights/synthetic/``), with no network.
"""

from __future__ import annotations

from robench.zoo.errors import DigestMismatch, HubUnavailable, Offline, TruncatedDownload, WebPageNotWeights, ZooError
from robench.zoo.fetch import WeightsSpec, fetch
from robench.zoo.load import load_zoo_model
from robench.zoo.manifest import ZooEntry, find_entry, read_manifest, zoo_entry, zoo_tracks

__all__ = ["DigestMismatch", "HubUnavailable", "Offline", "TruncatedDownload", "WebPageNotWeights", "WeightsSpec",
           "ZooEntry", "ZooError", "fetch", "find_entry", "load_zoo_model", "read_manifest", "zoo_entry", "zoo_tracks"]

"""How much an entry's predictions rest on each input: its accuracy when one input of every clip is replaced.

A fused RGB + skeleton model should need both inputs. For each input m of a two-input model and each evaluated clip
i, the clip keeps its other input and takes input m from a *donor*: the first clip after i, in the track's order
(cyclically), whose action differs from clip i's. A model that ignores m keeps its clean accuracy; one that reads
m alone falls towards 0% (the donor's m shows another action). The donors depend only on the track's clips and
labels, so every entry is measured on the same inputs.

A record holds the result as ``results.replaced``: ``{rgb: summary, skeleton: summary}`` (accuracy %, correct, n
and the 95% Wilson interval of :func:`robench.leaderboard.record.summary`), ``{}`` for a model of one input, and
the board shows it as the *Without R / S* column. The ``ignores-input`` flag (:mod:`robench.sanity`) comes from the
evaluation's own check on its first batch; this is the number to read beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robench.data.base import to_model_inputs
from robench.leaderboard.record import summary

if TYPE_CHECKING:
    from robench.api import ClipTorchDataset
    from robench.models.provided import ProvidedModel
    from robench.models.two_stream import TwoStreamModel

#: the inputs of a two-input model, in the order the board shows them
INPUTS = ("rgb", "skeleton")


def donors(labels: np.ndarray) -> np.ndarray:
    """For each clip, the position of its donor: the first clip after it (cyclically) with another label; the
    clip itself when every clip has its label (then nothing can be replaced)."""
    n = len(labels)
    out = np.arange(n)
    for i in range(n):
        for k in range(1, n):
            j = (i + k) % n
            if labels[j] != labels[i]:
                out[i] = j
                break
    return out


def replaced_bits(model: TwoStreamModel | ProvidedModel, clips: ClipTorchDataset, batch_size: int,
                  device: torch.device) -> dict[str, np.ndarray]:
    """Per input of ``model`` (one with both inputs), the per-clip correctness on ``clips`` (the track's evaluated
    clips, from :func:`robench.api.dataset`) with that input taken from each clip's donor (:func:`donors`); no
    gradients, fp32. ``{}`` for a model of one input."""
    if not all(m in model.modalities for m in INPUTS):
        return {}
    batch = clips.clips.get_batch(clips.indices)
    inputs = {m: x for m, x in to_model_inputs(batch, torch.device("cpu")).items() if m in INPUTS}
    labels = batch["label"].to(dtype=torch.int64)
    donor = torch.as_tensor(donors(labels.numpy()))
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for m in INPUTS:
            mixed = {**inputs, m: inputs[m][donor]}
            pred = torch.cat([model({k: v[s:s + batch_size].to(device) for k, v in mixed.items()}).argmax(1).cpu()
                              for s in range(0, len(labels), batch_size)])
            out[m] = (pred == labels).numpy().astype(bool)
    return out


def replaced_results(bits: dict[str, np.ndarray]) -> dict[str, Any]:
    """A record's ``results.replaced`` from :func:`replaced_bits`."""
    return {m: summary(b) for m, b in bits.items()}

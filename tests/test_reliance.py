"""Reliance on each input (robench.leaderboard.reliance): every clip takes one input from a clip of another action,
and the accuracy says whether the model reads that input. Known answers on models that read one input only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from robench.leaderboard.reliance import donors, replaced_bits, replaced_results

LABELS = np.array([0, 0, 1, 1, 2, 2, 2, 3])


def test_each_donor_is_the_next_clip_of_another_action() -> None:
    d = donors(LABELS)
    assert d.tolist() == [2, 2, 4, 4, 7, 7, 7, 0]
    assert all(LABELS[j] != LABELS[i] for i, j in enumerate(d))
    assert donors(np.array([5, 5, 5])).tolist() == [0, 1, 2]  # one action: nothing to replace with


@dataclass
class _Clips:
    """A stand-in for robench.api's clips: ``clips.get_batch(indices)`` and ``indices``; the label is written into
    both inputs (RGB grey level = label, the skeleton's first coordinate = label)."""

    labels: np.ndarray

    @property
    def clips(self) -> _Clips:
        return self

    @property
    def indices(self) -> np.ndarray:
        return np.arange(len(self.labels))

    def get_batch(self, idx: Any) -> dict[str, torch.Tensor]:
        y = torch.as_tensor(self.labels[np.asarray(idx)], dtype=torch.int64)
        rgb = y.view(-1, 1, 1, 1, 1).expand(-1, 3, 2, 4, 4).to(torch.uint8).clone()
        skeleton = torch.zeros(len(y), 3, 2, 25, 1)
        skeleton[:, 0] = y.view(-1, 1, 1, 1).float()
        return {"rgb": rgb, "skeleton": skeleton, "label": y}


class _Reader(torch.nn.Module):
    """Predicts the label written into one input (or their sum's half, reading both)."""

    modalities = ("rgb", "skeleton")

    def __init__(self, reads: str) -> None:
        super().__init__()
        self.reads = reads

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        from_rgb = (x["rgb"][:, 0, 0, 0, 0] * 255).round().long()
        from_skeleton = x["skeleton"][:, 0, 0, 0, 0].round().long()
        label = {"rgb": from_rgb, "skeleton": from_skeleton}.get(self.reads)
        if label is None:  # both: right only when they agree
            label = torch.where(from_rgb == from_skeleton, from_rgb, torch.full_like(from_rgb, 9))
        return torch.nn.functional.one_hot(label, 10).float()


@pytest.mark.parametrize("reads, without_rgb, without_skeleton", [("rgb", 0.0, 100.0), ("skeleton", 100.0, 0.0),
                                                                   ("both", 0.0, 0.0)])
def test_known_answers(reads: str, without_rgb: float, without_skeleton: float) -> None:
    bits = replaced_bits(_Reader(reads), _Clips(LABELS), batch_size=3, device=torch.device("cpu"))
    res = replaced_results(bits)
    assert res["rgb"]["accuracy"] == without_rgb and res["skeleton"]["accuracy"] == without_skeleton
    assert res["rgb"]["n"] == len(LABELS) and res["rgb"]["interval"][0] <= without_rgb <= res["rgb"]["interval"][1]


def test_a_one_input_model_has_no_reliance() -> None:
    model = _Reader("rgb")
    model.modalities = ("rgb",)  # type: ignore[assignment]
    assert replaced_bits(model, _Clips(LABELS), 4, torch.device("cpu")) == {}

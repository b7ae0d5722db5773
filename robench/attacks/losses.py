"""Per-sample losses that attacks maximise (each returns a ``[B]`` tensor; larger = closer to fooled).

* :func:`ce_loss`: cross-entropy (PGD, APGD-CE).
* :func:`cw_margin_loss`: the Carlini-Wagner L-inf margin, capped (the paper's CW, PGD-optimised).
* :func:`dlr_loss`: the Difference of Logits Ratio (Croce & Hein, ICML 2020, Eq. 4), invariant to
  shifting and rescaling the logits, so a saturated or rescaled softmax cannot hide the gradient.
* :func:`dlr_targeted_loss`: targeted DLR (APGD-T), towards class ``t``.
* :func:`margin_loss`: ``z_y - max_{j != y} z_j`` (Square's acceptance test; *minimised*, negative = fooled).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def ce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy ``[B]``."""
    return F.cross_entropy(logits, labels, reduction="none")


def _other_max(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(dim=1)


def cw_margin_loss(logits: Tensor, labels: Tensor, kappa: float = 50.0) -> Tensor:
    """Per-sample Carlini-Wagner margin ``min(max_{j != y} z_j - z_y, kappa)`` ``[B]`` (maximised).

    The L-inf CW attack of the paper's evaluation ("CW optimised by PGD-30"), in the form used by
    the TRADES / MART evaluation code: the margin is capped at ``kappa`` so that a sample already
    misclassified by a wide margin stops pulling.
    """
    true = logits.gather(1, labels[:, None]).squeeze(1)
    return (_other_max(logits, labels) - true).clamp(max=kappa)


def margin_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """``z_y - max_{j != y} z_j`` ``[B]``: positive while the sample is classified correctly."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    return true - _other_max(logits, labels)


def dlr_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """DLR ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)`` ``[B]``, pi sorting logits descending.

    Needs at least 3 classes. Croce & Hein 2020, Eq. 4 (``dlr_loss`` in AutoAttack).
    """
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, the model has {logits.shape[1]}")
    z = logits.float()
    top = z.topk(3, dim=1).values
    true = z.gather(1, labels[:, None]).squeeze(1)
    return -(true - _other_max(z, labels)) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted_loss(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """Targeted DLR ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` ``[B]`` (APGD-T; >= 4 classes)."""
    if logits.shape[1] < 4:
        raise ValueError(f"the targeted DLR loss needs at least 4 classes, the model has {logits.shape[1]}")
    z = logits.float()
    top = z.topk(4, dim=1).values
    true = z.gather(1, labels[:, None]).squeeze(1)
    tgt = z.gather(1, targets[:, None]).squeeze(1)
    return -(true - tgt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def target_classes(clean_logits: Tensor, k: int) -> Tensor:
    """Per row, the classes with the 2nd to (k + 1)-th largest clean logits (int64 ``[B, min(k, C - 1)]``):
    the targets of APGD-T and FAB-T, in AutoAttack's order."""
    k = min(k, clean_logits.shape[1] - 1)
    return clean_logits.argsort(dim=1, descending=True, stable=True)[:, 1 : k + 1]


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"ce": ce_loss, "cw": cw_margin_loss, "dlr": dlr_loss}

"""ExFMem: external feature memory banks with sparse reconstruction (Tian & Xu, CVPR 2021).

After training, each modality m gets a memory bank ``D_m`` of shape ``[feature_dim, N]``: the pooled
features (as they enter the fusion layer) of N training clips. At inference every feature f is
replaced by ``a * D h + (1 - a) * f``, where the sparse code h solves the lasso

    min_h  1/2 ||D h - f||^2 + lam ||h||_1

by ISTA: ``h <- shrink(h - alpha * D^T (D h - f), alpha * lam)`` from h = 0, stopping when
``||h - h_prev||_2 < tol`` (per sample) or after ``max_iter`` iterations (docs/defenses.md:
N = 1024, a = 0.5, lam = 0.1, tol = 8e-4, 2000 iterations). The official code hard-codes alpha per
dataset and refuses ``alpha * lambda_max(D^T D) > 1``; robench uses ``alpha = 1 / lambda_max``, the
largest step that converges. The model is then fine-tuned with the reconstruction in place.

Gradients flow through every ISTA iteration (nothing is detached), so white-box attacks see the
whole defended model; a sample's code stops changing once it has converged, which is also what
its gradient sees. **MinSim+ExFMem** (``minsim_exfmem``) builds the banks from the MinSim-trained
model and fine-tunes with the MinSim loss (official order: MinSim training, banks, fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from robench.data.base import MODALITIES, batch_indices
from robench.defenses.base import Defense, Inputs, LossOutput
from robench.defenses.minsim import MinSim
from robench.hashing import derive_seed
from robench.models.bpda import BackwardApproximable
from robench.models.two_stream import TwoStreamModel
from robench.registry import register_defense
from robench.train.context import TrainContext

ATTACK_NOTE = ("attacked end to end by default: gradients flow through the unrolled ISTA iterations (no detach); "
               "'evaluation: {bpda: identity | linear}' attacks it with BPDA instead (robench.models.bpda); "
               "the attack loss is the attack's own (cross-entropy for FGSM and PGD, CW margin for CW)")


def soft_threshold(x: Tensor, threshold: float | Tensor) -> Tensor:
    """``sign(x) * max(|x| - threshold, 0)``, the proximal map of ``threshold * ||.||_1``."""
    return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)


def ista(f: Tensor, bank: Tensor, lam: float, step: float | Tensor, tol: float, max_iter: int,
         gram: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Lasso codes of the rows of ``f`` over the columns of ``bank`` by ISTA.

    Args:
        f: ``[B, d]`` features.
        bank: ``[d, N]`` dictionary D.
        lam: l1 weight.
        step: alpha; converges for ``alpha <= 1 / lambda_max(D^T D)``.
        tol: a sample stops when ``||h - h_prev||_2 < tol``; its code is then frozen.
        max_iter: iteration cap.
        gram: ``D^T D`` if already computed.

    Returns:
        ``(h [B, N], iterations [B])``: the codes and how many iterations each sample took.
    """
    gram = bank.T @ bank if gram is None else gram
    target = f @ bank  # D^T f for each sample
    h = f.new_zeros(f.shape[0], bank.shape[1])
    active = torch.ones(f.shape[0], dtype=torch.bool, device=f.device)
    iterations = torch.zeros(f.shape[0], dtype=torch.long, device=f.device)
    for _ in range(max_iter):
        h_new = soft_threshold(h - step * (h @ gram - target), step * lam)
        moved = (h_new - h).norm(dim=1)
        h = torch.where(active[:, None], h_new, h)
        iterations += active.long()
        active = active & (moved >= tol)
        if not bool(active.any()):
            break
    return h, iterations


#: unrolled steps of the ``linear`` backward approximation (a truncated Neumann series of the lasso's local map)
LINEAR_BACKWARD_STEPS = 20


class FeatureMemory(BackwardApproximable):
    """Replaces a pooled feature f by ``blend * D h + (1 - blend) * f`` with h = ISTA code of f over D.

    Until a bank is set (:meth:`set_bank`) it is the identity. The bank and the ISTA step are
    buffers, saved in and restored from checkpoints (the bank takes the saved size).

    For adaptive attacks (:mod:`robench.models.bpda`), the forward pass stays exact and the backward is:
    ``off``, through every ISTA iteration; ``identity``, the identity (Athalye et al. 2018); ``linear``,
    through the lasso solution's linear map on the converged code's support S,
    ``dh_S = (D_S^T D_S)^-1 D_S^T df``, by ``LINEAR_BACKWARD_STEPS`` unrolled ISTA steps restricted to S
    from the converged code.
    """

    #: the bank D ``[dim, N]``, the ISTA step alpha and D^T D (registered buffers)
    bank: Tensor
    step: Tensor
    gram: Tensor

    def __init__(self, dim: int, blend: float, lam: float, tol: float, max_iter: int) -> None:
        super().__init__()
        self.blend, self.lam, self.tol, self.max_iter = blend, lam, tol, max_iter
        self.register_buffer("bank", torch.zeros(dim, 0))
        self.register_buffer("step", torch.zeros(()))
        self.register_buffer("gram", torch.zeros(0, 0), persistent=False)  # D^T D, derived from the bank

    @property
    def ready(self) -> bool:
        return self.bank.shape[1] > 0

    def set_bank(self, features: Tensor) -> None:
        """Use ``features`` ``[N, dim]`` as the bank; alpha = 1 / lambda_max(D^T D)."""
        bank = features.detach().T.contiguous().to(self.bank)
        lmax = float(torch.linalg.matrix_norm(bank, ord=2)) ** 2
        if lmax <= 0:
            raise ValueError("memory bank is all zeros")
        self.bank = bank
        self.step = torch.tensor(1.0 / lmax, dtype=bank.dtype, device=bank.device)
        self.gram = bank.T @ bank

    def codes(self, f: Tensor) -> tuple[Tensor, Tensor]:
        return ista(f, self.bank, self.lam, self.step, self.tol, self.max_iter, self.gram)

    def forward(self, f: Tensor) -> Tensor:
        if not self.ready:
            return f
        if self.bpda == "off":
            h, _ = self.codes(f)
            return self.blend * (h @ self.bank.T) + (1.0 - self.blend) * f
        with torch.no_grad():
            h, _ = self.codes(f)
            exact = self.blend * (h @ self.bank.T) + (1.0 - self.blend) * f
        if self.bpda == "identity":
            return f + (exact - f).detach()
        support = (h != 0).to(h.dtype)
        lin = h
        for _ in range(LINEAR_BACKWARD_STEPS):  # affine in f on the support: its Jacobian is the lasso's
            lin = support * (lin - self.step * (lin @ self.gram - f @ self.bank))
        approx = self.blend * (lin @ self.bank.T) + (1.0 - self.blend) * f
        return approx + (exact - approx).detach()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + "bank")
        if saved is not None and saved.shape != self.bank.shape:
            self.bank = torch.empty_like(saved, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.gram = self.bank.T @ self.bank


def memory(model: TwoStreamModel, modality: str) -> FeatureMemory:
    """The :class:`FeatureMemory` ExFMem put on ``modality``'s feature."""
    found = model.feature_transforms[modality]
    if not isinstance(found, FeatureMemory):
        raise TypeError(f"the {modality} feature transform is a {type(found).__name__}, not ExFMem's FeatureMemory")
    return found


@register_defense("exfmem")
@dataclass
class ExFMem(Defense):
    """External feature memory banks per modality with ISTA sparse reconstruction (Tian & Xu 2021).

    Args:
        bank_size: N, training clips stored per bank (fewer if the training split is smaller).
        blend: a in ``a * D h + (1 - a) * f``.
        lam: the lasso's l1 weight.
        tol: ISTA stops when a code moves less than this (L2).
        max_iter: ISTA iteration cap.
        finetune_epochs: epochs of fine-tuning with the reconstruction in place (not published;
            every epoch backpropagates through ISTA).
        finetune_lr: learning rate of the fine-tuning (null = a tenth of ``training.lr``).
        modalities: which modalities get a bank.
        minsim_weight: 0 = ExFMem on a normally trained model; > 0 = MinSim+ExFMem, built on the
            model trained with MinSim at this weight and fine-tuned with the MinSim loss.
        minsim_projection: MinSim's projection ("learned" or "fixed") for MinSim+ExFMem.
    """

    bank_size: int = 1024
    blend: float = 0.5
    lam: float = 0.1
    tol: float = 8e-4
    max_iter: int = 2000
    finetune_epochs: int = 1
    finetune_lr: float | None = None
    modalities: list[str] = field(default_factory=lambda: ["rgb", "skeleton"])
    minsim_weight: float = 0.0
    minsim_projection: Literal["learned", "fixed"] = "learned"

    def __post_init__(self) -> None:
        if self.bank_size < 1 or self.max_iter < 1 or self.finetune_epochs < 0:
            raise ValueError("bank_size and max_iter must be >= 1, finetune_epochs >= 0")
        if not 0.0 <= self.blend <= 1.0 or self.lam < 0 or self.tol < 0 or self.minsim_weight < 0:
            raise ValueError("blend must be in [0, 1]; lam, tol and minsim_weight >= 0")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if not self.modalities or bad:
            raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {self.modalities}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]

    def _minsim(self) -> MinSim | None:
        return MinSim(self.minsim_weight, self.minsim_projection) if self.minsim_weight > 0 else None

    def derives_from(self) -> tuple[str, dict[str, Any]]:
        minsim = self._minsim()
        if minsim is None:
            return ("none", {})
        return ("minsim", {"weight": minsim.weight, "projection": minsim.projection})

    def prepare(self, model: TwoStreamModel) -> None:
        minsim = self._minsim()
        if minsim is not None:
            minsim.prepare(model)  # same parameters as the MinSim base model
        for m in self.modalities:
            if m not in model.backbones:
                raise ValueError(f"ExFMem bank for {m}, but the model has no {m} backbone")
            model.feature_transforms[m] = FeatureMemory(model.backbone(m).feature_dim, self.blend, self.lam,
                                                        self.tol, self.max_iter)

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        """The fine-tuning loss: cross-entropy through the reconstruction (plus MinSim's term)."""
        out = model.run(inputs)
        ce = F.cross_entropy(out.logits, labels)
        minsim = self._minsim()
        if minsim is None:
            return LossOutput(ce, out.logits)
        cos = minsim.similarity(model, out).mean()
        return LossOutput(ce + minsim.weight * cos, out.logits,
                          {"loss_ce": float(ce.detach()), "cosine": float(cos.detach())})

    def build_banks(self, model: TwoStreamModel, ctx: TrainContext) -> None:
        """Fill each bank with the pooled features of N training clips (a seeded random subset)."""
        n = min(self.bank_size, len(ctx.train_set))
        gen = torch.Generator().manual_seed(derive_seed(ctx.seed, "exfmem-bank"))
        idx = torch.randperm(len(ctx.train_set), generator=gen)[:n].sort().values
        was_training = model.training
        model.eval()
        feats: dict[str, list[Tensor]] = {m: [] for m in self.modalities}
        with torch.no_grad():
            for inputs, _ in ctx.batches(index=batch_indices(len(idx), max(ctx.batch_size, 64), indices=idx)):
                out = model.run(inputs, use_transforms=False)
                for m in self.modalities:
                    feats[m].append(out.raw_features[m])
        for m in self.modalities:
            memory(model, m).set_bank(torch.cat(feats[m]))
        model.train(was_training)

    def finalize(self, model: TwoStreamModel, ctx: TrainContext) -> None:
        self.build_banks(model, ctx)
        banks = ", ".join(f"{m} {tuple(memory(model, m).bank.shape)}" for m in self.modalities)
        ctx.log(f"exfmem: banks of {banks}")
        if self.finetune_epochs and ctx.fit is not None:
            lr = self.finetune_lr if self.finetune_lr is not None else ctx.lr / 10
            ctx.fit(self.loss, self.finetune_epochs, "finetune", lr=lr)

    def summary(self, model: TwoStreamModel) -> dict[str, Any]:
        banks = {}
        for m in self.modalities:
            mem = memory(model, m)
            banks[m] = {"bank_size": int(mem.bank.shape[1]), "dim": int(mem.bank.shape[0]),
                        "step": float(mem.step), "lambda_max": 1.0 / float(mem.step) if float(mem.step) else None}
            if mem.ready:  # convergence on the bank's own first columns: how many ISTA steps a feature takes
                with torch.no_grad():
                    _, its = mem.codes(mem.bank[:, :64].T)
                banks[m]["mean_iterations"] = float(its.float().mean())
                banks[m]["max_iterations"] = int(its.max())
        return {"exfmem": banks, "notes": [ATTACK_NOTE]}


@register_defense("minsim_exfmem")
@dataclass
class MinSimExFMem(ExFMem):
    """MinSim+ExFMem: memory banks built on the MinSim-trained model, fine-tuned with the MinSim loss."""

    minsim_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.minsim_weight <= 0:
            raise ValueError("minsim_exfmem needs minsim_weight > 0 (use exfmem for plain ExFMem)")

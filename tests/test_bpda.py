"""BPDA (robench.models.bpda): the forward pass never changes, the backward does, and modes are restored."""

from __future__ import annotations

import pytest
import torch

from robench.defenses.exfmem import FeatureMemory
from robench.models.bpda import backward_approximation


def memory() -> FeatureMemory:
    torch.manual_seed(0)
    mem = FeatureMemory(dim=16, blend=0.5, lam=0.1, tol=1e-6, max_iter=500)
    mem.set_bank(torch.randn(32, 16))
    return mem


def grad_and_out(mem: FeatureMemory, f: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = f.clone().requires_grad_(True)
    out = mem(leaf)
    (g,) = torch.autograd.grad((out * w).sum(), [leaf])
    return out.detach(), g


def test_modes_keep_the_forward_and_change_the_backward() -> None:
    mem = memory()
    f, w = torch.randn(5, 16), torch.randn(5, 16)
    results = {}
    for mode in ("off", "identity", "linear"):
        with backward_approximation(mem, mode) as n:
            assert n == 1
            results[mode] = grad_and_out(mem, f, w)
    assert mem.bpda == "off"  # restored
    for mode in ("identity", "linear"):
        assert torch.allclose(results[mode][0], results["off"][0], atol=1e-6)
    assert torch.equal(results["identity"][1], w)  # the identity's backward passes the upstream gradient
    assert not torch.allclose(results["linear"][1], w)
    assert torch.isfinite(results["linear"][1]).all()
    # the lasso's local linear map: close to the exact gradient through the converged ISTA iterations
    cos = torch.nn.functional.cosine_similarity(results["linear"][1].flatten(), results["off"][1].flatten(), dim=0)
    assert cos > 0.9, float(cos)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="bpda must be one of"):
        with backward_approximation(memory(), "straight-through"):
            pass

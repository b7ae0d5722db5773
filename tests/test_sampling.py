"""Per-clip random draws (``training.sample_seeds``): the dropout and the step's clip seeds."""

from __future__ import annotations

import torch
from torch import nn

from robench.models.sampling import SeededDropout, clip_seeds, current_seeds, step_seeds


def test_outside_a_step_it_is_torch_dropout_draw_for_draw() -> None:
    x = torch.randn(4, 6, 5, 3)
    for ours, theirs in ((SeededDropout(0.5), nn.Dropout(0.5)), (SeededDropout(0.3, channels=True), nn.Dropout2d(0.3)),
                         (SeededDropout(0.0), nn.Dropout(0.0))):
        torch.manual_seed(7)
        a = ours.train()(x)
        torch.manual_seed(7)
        b = theirs.train()(x)
        assert torch.equal(a, b)
        assert torch.equal(ours.eval()(x), x)


def test_inside_a_step_each_clip_draws_from_its_own_seed_whatever_its_batch() -> None:
    x = torch.ones(3, 8, 4, 4)
    seeds = clip_seeds((0, "epoch", 0, "clip"), torch.tensor([10, 11, 12]))
    assert seeds.tolist() == clip_seeds((0, "epoch", 0, "clip"), torch.tensor([10, 11, 12])).tolist()
    for drop in (SeededDropout(0.5), SeededDropout(0.5, channels=True)):
        drop.train()
        with step_seeds(seeds):
            assert torch.equal(current_seeds(), seeds)  # type: ignore[arg-type]
            whole = drop(x)
        with step_seeds(seeds[2:]):
            alone = drop(x[2:])
        assert torch.equal(whole[2:], alone)  # clip 12 alone gets the mask it had in the batch
        assert not torch.equal(whole[0], whole[1])  # clips differ
        assert set(whole.unique().tolist()) <= {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
        if drop.channels:  # whole feature maps are dropped together
            maps = whole.flatten(2)
            assert torch.equal(maps.amax(-1), maps.amin(-1))
        with step_seeds(seeds):
            first, second = drop(x), drop(x)
        assert not torch.equal(first, second)  # a second call in the step draws anew
    assert current_seeds() is None


def test_bodies_folded_into_the_batch_draw_per_clip_and_body() -> None:
    drop = SeededDropout(0.5).train()
    seeds = clip_seeds((1,), torch.tensor([3, 4]))
    x = torch.ones(4, 32)  # two clips of two bodies, clip-major
    with step_seeds(seeds):
        both = drop(x)
    with step_seeds(seeds[1:]):
        second = drop(x[2:])
    assert torch.equal(both[2:], second) and not torch.equal(both[2], both[3])

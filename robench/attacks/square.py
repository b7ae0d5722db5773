"""Square: the score-based black-box attack of AutoAttack (Andriushchenko et al., ECCV 2020), for video and skeletons.

Distance: L-inf per modality. No gradients: Square only reads the model's logits, so a defense that
masks or obfuscates gradients does not stop it. If Square fools clips that the gradient attacks
could not, the gradients were misleading them (a sanity flag, ``docs/flags.md``).

Reference algorithm (``autoattack/square.py``), per sample, all in the margin ``z_y - max_{j != y} z_j``
(negative = fooled):

* start from vertical stripes: every column gets ``+-eps``, one sign per channel;
* each query picks a random window covering a fraction ``p`` of the frame and sets the perturbation
  there to ``+-eps`` (one random sign per channel, redrawn until the window changes); the query is
  kept if the margin drops;
* ``p`` starts at ``p_init`` (0.8) and halves after queries 10, 50, 200, 500, 1000, 2000, 4000,
  6000 and 8000; ``queries`` (5000) bounds the queries after the first one; a fooled sample stops.

Carried over to the two modalities (docs/attacks.md): for video, each frame is an image: the window
is a square over (H, W), each side ``sqrt(p)`` of its axis, with one sign per colour channel *and
frame*, and the starting stripes are one sign per channel, frame and column (the reference run on the
clip's frames stacked as channels). ``video_windows="cuboids"`` (robench's version 1 layout, kept to
compare) uses windows over (T, H, W) with each side ``p^(1/3)`` and one sign per channel: far fewer
directions per query, and measurably weaker (``benchmarks/square_layouts.py``). The skeleton's window
is over (T, V), each side ``sqrt(p)`` of its axis, with one sign per channel and person; its stripes run
along the joints; an absent person (all coordinates zero) is never perturbed. When both modalities are
attacked, every query moves one window in each. Window positions and signs are drawn per sample (the
reference draws one position per batch), from counter-based per-sample randomness
(:func:`~robench.attacks.engine.row_uniform`), so results do not depend on batching. A clip that the
starting stripes already fool finishes at once and counts as broken by Square, not as misclassified
clean.

L2 (``norm="l2"``, the L2 Square Attack of Andriushchenko et al. 2020, the authors'
``square_attack_l2``): each modality's perturbation lives in its per-clip L2 ball of radius eps_m
(input units: RGB on the [0, 1] scale, skeleton in metres) and is kept on its sphere. The start tiles
the window axes with a grid of about 5 x 5 blocks, each a centred pseudo-Gaussian bump pair
(``meta_pseudo_gaussian_pert``: ``+bump`` on one half of the block, ``-bump`` on the other, split along a
random axis), with one random sign per block and "channel", rescaled to L2 norm eps. Each query draws
two windows of the same size (each side about ``sqrt(p)`` of its axis, at least 3 and odd): window 1
gets a new bump pair (one random sign per channel) added to its normalised old content, window 2 is
cleared, and window 1 is rescaled per channel to take the mass of both windows plus an equal share of
the budget not yet used, ``sqrt(max(eps^2 - ||delta||^2, 0) / c + ||delta_(w1 u w2)||^2)``; then the whole
perturbation is rescaled to L2 norm eps and clipped to the valid range. The "channels" are the axes
that carry signs in the L-inf layout: (colour channel, frame) for video, so each frame is an image whose
windows sit at one position in every frame, and (coordinate, person) for the skeleton, whose windows are
over (T, V); ``c`` is their number. The norms of window contents are per channel, as in the authors' code
(AutoAttack's port takes them over all channels).

Example::

    from robench.attacks import Square
    adv = Square(modalities=["rgb"], eps=8 / 255, queries=1000)(model.eval(), inputs, labels)
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from robench.attacks.base import Bounds, Inputs, Plausible, clip_norms, l2_normalise
from robench.attacks.engine import EngineAttack, Model, Rows, State, clean_check, per_row, row_uniform, rows_where
from robench.attacks.losses import margin_loss
from robench.registry import register_attack

#: query numbers after which p halves (the reference's schedule for 10,000-query runs, used unscaled)
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: per modality: (window axes, axes with one sign per index) of a [B, ...] input; stripes run along
#: the last window axis
LAYOUT: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "rgb": ((3, 4), (1, 2)),             # [B, C, T, H, W]: squares over (H, W), a sign per channel and frame
    "skeleton": ((2, 3), (1, 4)),        # [B, C, T, V, M]: windows over (T, V), a sign per channel and person
}
#: the video layouts ``video_windows`` chooses between
VIDEO_WINDOWS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "frames": LAYOUT["rgb"],
    "cuboids": ((2, 3, 4), (1,)),        # robench 0.1's version 1: cuboids over (T, H, W), a sign per channel
}
_TRIES = 8  # redraws of a window's signs until it changes the point


def p_schedule(p_init: float, query: Tensor) -> Tensor:
    """The window fraction at (0-based) query ``query`` (float ``[B]``)."""
    halvings = torch.zeros_like(query)
    for t in P_HALVINGS:
        halvings += (query > t).long()
    return p_init / (2.0 ** halvings.to(torch.float64))


def bump(sizes: Sequence[int]) -> Tensor:
    """The centred pseudo-Gaussian bump of the L2 Square Attack over a window of ``sizes`` (any number of
    axes), unit L2 norm (float64).

    The authors' ``pseudo_gaussian_pert_rectangles``: nested boxes around the centre (index ``size // 2``
    per axis) adding ``1 / (k + 1)^2`` for k = 0 .. K - 1, K = max(size // 2 + 1); in closed form the
    value at an index at Chebyshev distance d from the centre is ``sum_{k=d}^{K-1} 1 / (k + 1)^2``.
    """
    k = max(s // 2 + 1 for s in sizes)
    partial = torch.cat([torch.zeros(1, dtype=torch.float64),
                         (1.0 / torch.arange(1, k + 1, dtype=torch.float64) ** 2).cumsum(0)])
    dist = torch.zeros(tuple(sizes), dtype=torch.int64)
    for j, s in enumerate(sizes):
        shape = [1] * len(sizes)
        shape[j] = s
        dist = torch.maximum(dist, (torch.arange(s) - s // 2).abs().view(shape))
    out = partial[k] - partial[dist]
    return out / out.norm()


@functools.lru_cache(maxsize=64)
def bump_pairs(sizes: tuple[int, ...]) -> Tensor:
    """``meta_pseudo_gaussian_pert`` for each split axis: ``[len(sizes), *sizes]`` (float64), entry a the
    window split along axis a into a ``+bump`` first half and a ``-bump`` second half, unit L2 norm (an
    axis shorter than 2 cannot be split: its entry is one bump). Cached per window size: do not modify."""
    out = []
    for a, s in enumerate(sizes):
        if s < 2:
            out.append(bump(sizes))
            continue
        first, second = list(sizes), list(sizes)
        first[a], second[a] = s // 2, s - s // 2
        pair = torch.cat([bump(first), -bump(second)], dim=a)
        out.append(pair / pair.norm())
    return torch.stack(out)


def _place(patterns: Tensor, choice: Tensor, starts: Tensor, x: Tensor, win: tuple[int, ...]) -> Tensor:
    """Per row, ``patterns[choice]`` placed at ``starts`` (int64 ``[B, len(win)]``) along the window axes
    ``win`` of ``x``, zero elsewhere: a tensor broadcastable to ``x`` (size 1 on the other axes)."""
    b, k = x.shape[0], len(win)
    pat = patterns.to(device=x.device, dtype=x.dtype)
    index: list[Tensor] = [choice.to(x.device).view(b, *([1] * k))]
    inside = torch.ones((b,) + (1,) * k, dtype=torch.bool, device=x.device)
    for j, a in enumerate(win):
        n, s = x.shape[a], pat.shape[1 + j]
        rel = torch.arange(n, device=x.device)[None, :] - starts[:, j : j + 1].to(x.device)
        shape = [b] + [1] * k
        shape[1 + j] = n
        index.append(rel.clamp(0, s - 1).view(shape))
        inside = inside & ((rel >= 0) & (rel < s)).view(shape)
    values = pat[tuple(index)] * inside
    shape = [b] + [1] * (x.dim() - 1)
    for a in win:
        shape[a] = x.shape[a]
    return values.view(shape)


def _box(starts: Tensor, sizes: Sequence[int], x: Tensor, win: tuple[int, ...]) -> Tensor:
    """Per row, the window of ``sizes`` at ``starts`` along the axes ``win`` (bool, broadcastable to ``x``)."""
    mask = torch.ones((x.shape[0],) + (1,) * (x.dim() - 1), dtype=torch.bool, device=x.device)
    for j, a in enumerate(win):
        ar = torch.arange(x.shape[a], device=x.device)
        lo = starts[:, j : j + 1].to(x.device)
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        shape[a] = x.shape[a]
        mask = mask & ((ar[None, :] >= lo) & (ar[None, :] < lo + sizes[j])).view(shape)
    return mask


def l2_window_sizes(p: float, x: Tensor, win: tuple[int, ...]) -> list[int]:
    """The L2 Square Attack's window at fraction ``p``: each side about ``p^(1/k)`` of its axis (k window
    axes), at least 3 (or the axis) and odd where the axis allows (the authors' ``max(round(sqrt(p h w)), 3)``,
    made odd, for square images)."""
    out = []
    for a in win:
        n = x.shape[a]
        s = min(max(round(p ** (1.0 / len(win)) * n), min(3, n)), n)
        if s % 2 == 0 and s < n:
            s += 1
        out.append(s)
    return out


def _layout(m: str, x: Tensor, video: str = "frames") -> tuple[tuple[int, ...], tuple[int, ...]]:
    if m == "rgb":
        return VIDEO_WINDOWS[video]
    if m in LAYOUT:
        return LAYOUT[m]
    return tuple(range(2, x.dim())), (1,)  # another modality: windows over every axis after the channel


@register_attack("square")
class Square(EngineAttack):
    """Square attack, L-inf or L2, margin loss (AutoAttack's black-box member).

    Args:
        modalities: inputs to perturb (one window per modality per query).
        eps: radius of the L-inf (or, with ``norm="l2"``, per-clip L2) ball, per modality or shared (RGB
            in [0, 1] units, skeleton in metres).
        queries: queries after the initial one (standard: 5000).
        p_init: initial window fraction (0.8).
        video_windows: ``"frames"`` (squares over each frame's (H, W), a sign per channel and frame: the
            default) or ``"cuboids"`` (version 1's windows over (T, H, W), a sign per channel).
        bounds: valid range per modality.
        plausible: plausible-skeleton limits (see :class:`~robench.attacks.base.Attack`).
        norm: ``"linf"`` or ``"l2"`` (the L2 Square Attack; see the module docstring).
    """

    version = 2
    gradient_free = True
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], queries: int = 5000,
                 p_init: float = 0.8, video_windows: str = "frames", bounds: Bounds | None = None,
                 plausible: Plausible = None, norm: str = "linf") -> None:
        super().__init__(modalities, eps, bounds, plausible, norm=norm)
        if video_windows not in VIDEO_WINDOWS:
            raise ValueError(f"video_windows must be one of {', '.join(VIDEO_WINDOWS)}, got {video_windows!r}")
        self.video_windows = video_windows
        if queries < 0:
            raise ValueError(f"queries must be >= 0, got {queries}")
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.queries, self.p_init = int(queries), float(p_init)
        self.queries_used = 0  # model queries made (rows x forward passes), for cost reports

    def _signs(self, m: str, x: Tensor, seeds: Tensor, counter: Tensor, stream: int, stripes: bool) -> Tensor:
        """+-1 per sign axis (and, for stripes, per index of the last window axis), broadcastable to ``x``."""
        win, sign_axes = _layout(m, x, self.video_windows)
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        for a in sign_axes:
            shape[a] = x.shape[a]
        if stripes:
            shape[win[-1]] = x.shape[win[-1]]
        k = 1
        for s in shape[1:]:
            k *= s
        u = row_uniform(seeds, counter, stream, k, x.device)
        return torch.where(u < 0.5, -1.0, 1.0).to(x.dtype).view(shape)

    def _present(self, m: str, x: Tensor) -> Tensor:
        """1 where a skeleton's person is present (any non-zero coordinate), else 0; all ones otherwise."""
        if m != "skeleton":
            return torch.ones((), dtype=x.dtype, device=x.device)
        return (x.abs().amax(dim=(1, 2, 3), keepdim=True) > 0).to(x.dtype)

    def _window(self, m: str, x: Tensor, p: Tensor, seeds: Tensor, counter: Tensor, stream: int) -> Tensor:
        """A random window mask (bool, broadcastable to ``x``) covering about ``p`` of the window axes."""
        win, _ = _layout(m, x, self.video_windows)
        side = p ** (1.0 / len(win))
        u = row_uniform(seeds, counter, stream, len(win), x.device)
        mask = torch.ones((x.shape[0],) + (1,) * (x.dim() - 1), dtype=torch.bool, device=x.device)
        for j, a in enumerate(win):
            size = x.shape[a]
            s = (side.to(x.device) * size).round().clamp(1, size).long()
            start = (u[:, j] * (size - s + 1).to(u.dtype)).floor().long()
            ar = torch.arange(size, device=x.device)
            inside = (ar[None, :] >= start[:, None]) & (ar[None, :] < (start + s)[:, None])
            shape = [x.shape[0]] + [1] * (x.dim() - 1)
            shape[a] = size
            mask = mask & inside.view(shape)
        return mask

    def _margin(self, model: Model, rows: Rows, adv: Inputs) -> Tensor:
        with torch.no_grad():
            logits = model({**rows.fixed, **adv})
        self.queries_used += len(rows)
        return margin_loss(logits.float(), rows.labels)

    def begin(self, model: Model, rows: Rows) -> tuple[State, Tensor]:
        n, dev = len(rows), rows.labels.device
        seeds = rows.seeds if rows.seeds is not None else torch.randint(0, 2**62, (n,))
        state: State = {"seed": seeds.to(torch.int64).cpu(), "q": torch.zeros(n, dtype=torch.int64, device=dev)}
        if all(e == 0 for e in self.eps.values()):
            state.update({f"best:{m}": t.clone() for m, t in rows.x.items()})
            return state, torch.ones(n, dtype=torch.bool, device=dev)
        zero = torch.zeros(n, dtype=torch.int64)
        for j, (m, x) in enumerate(rows.x.items()):
            if self.norm == "l2":
                state[f"best:{m}"] = self._l2_init(m, x, state["seed"], 4000 + 2 * j)
                continue
            stripes = self._signs(m, x, state["seed"], zero, 1000 + j, stripes=True)
            state[f"best:{m}"] = self.within_limits(x + self.eps[m] * stripes * self._present(m, x), x, m)
        margin = self._margin(model, rows, {m: state[f"best:{m}"] for m in rows.x})
        _, clean_wrong = clean_check(model, rows)
        for m, x in rows.x.items():  # a clip misclassified clean is returned clean
            state[f"best:{m}"] = rows_where(clean_wrong, x, state[f"best:{m}"])
        state["margin"] = margin
        done = clean_wrong | (margin < 0) | torch.tensor(self.queries == 0, device=dev)
        return state, done

    def _l2_init(self, m: str, x: Tensor, seeds: Tensor, stream: int) -> Tensor:
        """The L2 start: a centred grid of bump-pair blocks, a random split axis per block and a random
        sign per block and channel, rescaled to L2 norm eps (then into the valid range)."""
        win, _ = _layout(m, x, self.video_windows)
        sizes = [max(x.shape[a] // 5, 1) for a in win]
        counts = [x.shape[a] // s for a, s in zip(win, sizes)]
        offsets = [(x.shape[a] - s * c) // 2 for a, s, c in zip(win, sizes, counts)]
        pairs = bump_pairs(tuple(sizes))
        delta = torch.zeros_like(x)
        for t, cell in enumerate(itertools.product(*(range(c) for c in counts))):
            counter = torch.full((x.shape[0],), t, dtype=torch.int64)
            starts = torch.tensor([o + i * s for o, i, s in zip(offsets, cell, sizes)]).expand(x.shape[0], -1)
            choice = (row_uniform(seeds, counter, stream, 1, x.device)[:, 0] * len(win)).long().clamp(max=len(win) - 1)
            signs = self._signs(m, x, seeds, counter, stream + 1, stripes=False)
            delta = delta + _place(pairs, choice, starts, x, win) * signs
        delta = delta * self._present(m, x)
        return self.within_limits(x + self.eps[m] * l2_normalise(delta), x, m)

    def _l2_candidate(self, m: str, x: Tensor, best: Tensor, p: float, seeds: Tensor, q: Tensor,
                      stream: int) -> Tensor:
        """One L2 query's candidate for rows ``x`` at window fraction ``p`` (see the module docstring)."""
        win, _ = _layout(m, x, self.video_windows)
        k, eps = len(win), self.eps[m]
        sizes = l2_window_sizes(p, x, win)
        u = row_uniform(seeds, q, stream, 2 * k + 1, x.device)
        room = torch.tensor([x.shape[a] - s + 1 for a, s in zip(win, sizes)], dtype=u.dtype, device=x.device)
        starts1 = (u[:, :k] * room).floor().long()
        starts2 = (u[:, k : 2 * k] * room).floor().long()
        choice = (u[:, 2 * k] * k).long().clamp(max=k - 1)
        w1, w2 = _box(starts1, sizes, x, win), _box(starts2, sizes, x, win)
        delta = best - x
        present = self._present(m, x)
        channels = 1
        for a in range(1, x.dim()):
            if a not in win:
                channels *= x.shape[a]

        def window_norm(t: Tensor) -> Tensor:  # per row and channel
            return t.pow(2).sum(dim=win, keepdim=True).sqrt()

        in_w1 = delta * w1
        budget = (eps**2 - clip_norms(delta).pow(2)).clamp(min=0)
        mass = (per_row(budget, x) / channels + window_norm(delta * (w1 | w2)).pow(2)).sqrt()
        signs = self._signs(m, x, seeds, q, stream + 1, stripes=False)
        fresh = _place(bump_pairs(tuple(sizes)), choice, starts1, x, win) * signs + in_w1 / (1e-10 + window_norm(in_w1))
        fresh = fresh / window_norm(fresh).clamp(min=1e-12) * mass
        delta = torch.where(w1, fresh, torch.where(w2, torch.zeros_like(delta), delta)) * present
        return self.within_limits(x + eps * l2_normalise(delta), x, m)

    def _l2_advance_inputs(self, rows: Rows, state: State) -> Inputs:
        """Every row's L2 candidate, rows grouped by their window fraction (one window size per group)."""
        q = state["q"]
        p = p_schedule(self.p_init, q.cpu())
        new: Inputs = {}
        for j, (m, x) in enumerate(rows.x.items()):
            cand = state[f"best:{m}"].clone()
            for value in p.unique().tolist():
                sel = (p == value).nonzero().squeeze(1)
                idx = sel.to(x.device)
                cand[idx] = self._l2_candidate(m, x[idx], state[f"best:{m}"][idx], float(value), state["seed"][sel],
                                               q.cpu()[sel], 3000 + 2 * j)
            new[m] = cand
        return new

    def advance(self, model: Model, rows: Rows, state: State) -> Tensor:
        if self.norm == "l2":
            return self._accept(model, rows, state, self._l2_advance_inputs(rows, state))
        q = state["q"]
        p = p_schedule(self.p_init, q.cpu())
        new: Inputs = {}
        for j, (m, x) in enumerate(rows.x.items()):
            best = state[f"best:{m}"]
            eps = self.eps[m]
            mask = self._window(m, x, p, state["seed"], q.cpu(), 2 * j)
            present = self._present(m, x)
            cand = best
            pending = torch.ones(len(rows), dtype=torch.bool, device=x.device)
            for attempt in range(_TRIES):  # redraw the signs until the window changes the point
                signs = self._signs(m, x, state["seed"], q.cpu() * _TRIES + attempt, 2 * j + 1, stripes=False)
                delta = torch.where(mask, eps * signs * present, best - x)
                trial = self.within_limits(x + delta, x, m)
                changed = (trial != best).flatten(1).any(1)
                cand = rows_where(pending, trial, cand)
                pending = pending & ~changed
                if not bool(pending.any()):
                    break
            new[m] = cand
        return self._accept(model, rows, state, new)

    def _accept(self, model: Model, rows: Rows, state: State, new: Inputs) -> Tensor:
        """Keep the candidates that lower the margin; count the query; which rows are finished."""
        q = state["q"]
        margin = self._margin(model, rows, new)
        better = margin < state["margin"]
        for m, x in new.items():
            state[f"best:{m}"] = rows_where(better, x, state[f"best:{m}"])
        state["margin"] = torch.where(better, margin, state["margin"])
        state["q"] = q + 1
        return (state["margin"] < 0) | (state["q"] >= self.queries)

    def adversarial(self, rows: Rows, state: State) -> Inputs:
        return {m: state[f"best:{m}"] for m in rows.x}

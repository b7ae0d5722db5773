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

Example::

    from robench.attacks import Square
    adv = Square(modalities=["rgb"], eps=8 / 255, queries=1000)(model.eval(), inputs, labels)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from robench.attacks.base import Bounds, Inputs, Plausible
from robench.attacks.engine import EngineAttack, Model, Rows, State, clean_check, row_uniform, rows_where
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


def _layout(m: str, x: Tensor, video: str = "frames") -> tuple[tuple[int, ...], tuple[int, ...]]:
    if m == "rgb":
        return VIDEO_WINDOWS[video]
    if m in LAYOUT:
        return LAYOUT[m]
    return tuple(range(2, x.dim())), (1,)  # another modality: windows over every axis after the channel


@register_attack("square")
class Square(EngineAttack):
    """Square attack, L-inf, margin loss (AutoAttack's black-box member).

    Args:
        modalities: inputs to perturb (one window per modality per query).
        eps: L-inf radius, per modality or shared (RGB in [0, 1] units, skeleton in metres).
        queries: queries after the initial one (standard: 5000).
        p_init: initial window fraction (0.8).
        video_windows: ``"frames"`` (squares over each frame's (H, W), a sign per channel and frame: the
            default) or ``"cuboids"`` (version 1's windows over (T, H, W), a sign per channel).
        bounds: valid range per modality.
    """

    version = 2
    gradient_free = True

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], queries: int = 5000,
                 p_init: float = 0.8, video_windows: str = "frames", bounds: Bounds | None = None,
                 plausible: Plausible = None) -> None:
        super().__init__(modalities, eps, bounds, plausible)
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
            stripes = self._signs(m, x, state["seed"], zero, 1000 + j, stripes=True)
            state[f"best:{m}"] = self.within_limits(x + self.eps[m] * stripes * self._present(m, x), x, m)
        margin = self._margin(model, rows, {m: state[f"best:{m}"] for m in rows.x})
        _, clean_wrong = clean_check(model, rows)
        for m, x in rows.x.items():  # a clip misclassified clean is returned clean
            state[f"best:{m}"] = rows_where(clean_wrong, x, state[f"best:{m}"])
        state["margin"] = margin
        done = clean_wrong | (margin < 0) | torch.tensor(self.queries == 0, device=dev)
        return state, done

    def advance(self, model: Model, rows: Rows, state: State) -> Tensor:
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
        margin = self._margin(model, rows, new)
        better = margin < state["margin"]
        for m, x in new.items():
            state[f"best:{m}"] = rows_where(better, x, state[f"best:{m}"])
        state["margin"] = torch.where(better, margin, state["margin"])
        state["q"] = q + 1
        return (state["margin"] < 0) | (state["q"] >= self.queries)

    def adversarial(self, rows: Rows, state: State) -> Inputs:
        return {m: state[f"best:{m}"] for m in rows.x}

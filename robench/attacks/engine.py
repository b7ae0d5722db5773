"""The attack engine: per-sample attack state in a fixed-size active batch, refilled as samples finish.

An :class:`EngineAttack` is written as three methods on a batch of *rows* (samples):
:meth:`~EngineAttack.begin` makes each row's state, :meth:`~EngineAttack.advance` moves every
active row by one model pass (a forward+backward for gradient attacks, a forward for Square) and
says which rows are finished, and :meth:`~EngineAttack.adversarial` returns a finished row's
adversarial input. Every quantity that drives a row (its iteration counter, step size, restart,
target, random draws) is per row, so a row's trajectory does not depend on which other rows share
its batch. :func:`run_engine` exploits that: it keeps ``capacity`` rows in flight and, whenever rows
finish (fooled, or out of iterations), pulls new clips from the rest of the evaluation set into the
free slots, as AutoAttack re-batches the points still to attack. An early-stopping attack then
costs per model pass what a full batch costs, instead of paying a shrinking batch's poor
throughput (issue 11: 88 ms for 32 clips, 25 ms for 4).

Randomness is per row: the seeded draws of :func:`row_uniform` are a counter-based hash of (row
seed, draw counter, stream), so they are the same however rows are batched. This is what makes the
engine's per-sample results equal to attacking each clip alone (for models whose output for one
clip does not depend on the rest of the batch, i.e. eval mode).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from robench.attacks.base import Attack, Bounds, Inputs, Plausible
from robench.hashing import derive_seed

#: per-row attack state: tensors whose first dimension is the row
State = dict[str, Tensor]
Model = Callable[[Inputs], Tensor]


@dataclass
class Rows:
    """Clips under attack: the attacked modalities' clean inputs, the untouched ones, labels and seeds.

    ``seeds`` (int64 ``[B]``) are the per-sample seeds of every random draw; ``pos`` (int64 ``[B]``)
    says where each row sits in the caller's order (rows finish out of order).
    """

    x: Inputs
    fixed: Inputs
    labels: Tensor
    seeds: Tensor | None
    pos: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def clean(self) -> Inputs:
        return {**self.fixed, **self.x}

    def take(self, idx: Tensor) -> Rows:
        """The rows selected by ``idx`` (a boolean mask or indices)."""
        return Rows({m: t[idx] for m, t in self.x.items()}, {m: t[idx] for m, t in self.fixed.items()},
                    self.labels[idx], None if self.seeds is None else self.seeds[idx.to(self.seeds.device)],
                    self.pos[idx.to(self.pos.device)])

    @staticmethod
    def cat(parts: Sequence[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        seeds = None if first.seeds is None else torch.cat([p.seeds for p in parts if p.seeds is not None])
        return Rows({m: torch.cat([p.x[m] for p in parts]) for m in first.x},
                    {m: torch.cat([p.fixed[m] for p in parts]) for m in first.fixed},
                    torch.cat([p.labels for p in parts]), seeds, torch.cat([p.pos for p in parts]))


def per_row(v: Tensor, like: Tensor) -> Tensor:
    """A per-row tensor ``[B]`` viewed to broadcast against ``like`` ``[B, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def rows_where(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` on the rows where ``mask`` (bool ``[B]``) holds, ``old`` elsewhere."""
    return torch.where(per_row(mask, new), new, old)


def seeded_rand(like: Tensor, seeds: Sequence[int], keys: Sequence[tuple[object, ...]]) -> Tensor:
    """Uniform [0, 1) noise shaped like ``like``, row i drawn by its own generator seeded with
    ``derive_seed(seeds[i], *keys[i])``: the same draw whatever rows it is batched with."""
    u = torch.empty_like(like)
    gen = torch.Generator(device=like.device)
    for i, (seed, key) in enumerate(zip(seeds, keys)):
        gen.manual_seed(derive_seed(seed, *key))
        u[i] = torch.rand(like.shape[1:], dtype=like.dtype, device=like.device, generator=gen)
    return u


def seeded_randn(like: Tensor, seeds: Sequence[int], keys: Sequence[tuple[object, ...]]) -> Tensor:
    """Standard normal noise shaped like ``like``, row i drawn by its own generator seeded with
    ``derive_seed(seeds[i], *keys[i])`` (as :func:`seeded_rand`): the same draw whatever rows it is batched with."""
    z = torch.empty_like(like)
    gen = torch.Generator(device=like.device)
    for i, (seed, key) in enumerate(zip(seeds, keys)):
        gen.manual_seed(derive_seed(seed, *key))
        z[i] = torch.randn(like.shape[1:], dtype=like.dtype, device=like.device, generator=gen)
    return z


def clean_check(model: Model, rows: Rows) -> tuple[Tensor, Tensor]:
    """The rows' clean logits (no gradient) and which rows they misclassify (bool ``[B]``)."""
    with torch.no_grad():
        logits = model(rows.clean)
    return logits, logits.argmax(1) != rows.labels


def take_state(state: State, idx: Tensor) -> State:
    return {k: v[idx.to(v.device)] for k, v in state.items()}


def cat_states(parts: Sequence[State]) -> State:
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@dataclass
class GradientAudit:
    """Gradient sanity counts of one attack run (AutoAttack's ``check_zero_gradients``, counted per sample).

    ``checked`` samples had their first input gradient computed; of those, ``zero`` had a gradient
    that is identically zero on every attacked modality, and ``missing`` had no gradient at all for
    some attacked modality (the model's output does not depend on it through autograd). A missing
    gradient is never replaced by zeros silently: it is counted here and the attack's step for that
    modality is zero, which the sanity flags report.
    """

    checked: int = 0
    zero: int = 0
    missing: int = 0

    def absorb(self, other: GradientAudit) -> None:
        """Add ``other``'s counts (an ensemble sums its members')."""
        self.checked += other.checked
        self.zero += other.zero
        self.missing += other.missing

    def add(self, first: Tensor, zero: Tensor, missing: bool) -> None:
        self.checked += int(first.sum())
        self.zero += int((first & zero).sum())
        if missing:
            self.missing += int(first.sum())


def input_gradients(model: Model, fixed: Inputs, cur: Inputs, loss_fn: Callable[[Tensor, Tensor], Tensor],
                    target: Tensor, audit: bool = True) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor, bool]:
    """One forward+backward: ``(logits, per-sample loss, gradient per attacked modality, zero, missing)``.

    ``zero`` (bool ``[B]``) marks samples whose gradient is identically zero on every modality (all False
    without ``audit``, which skips that reduction when no row needs it);
    ``missing`` is True when autograd returned no gradient for some modality (then its entry is
    zeros and the caller must count it, see :class:`GradientAudit`).
    """
    with torch.enable_grad():
        leaves = {m: t.detach().requires_grad_(True) for m, t in cur.items()}
        logits = model({**fixed, **leaves})
        loss = loss_fn(logits, target)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True)
    missing = any(g is None for g in grads)
    out = {m: (g.detach() if g is not None else torch.zeros_like(leaves[m])) for m, g in zip(leaves, grads)}
    zero = torch.full((logits.shape[0],), audit, dtype=torch.bool, device=logits.device)
    if audit:
        for g in out.values():
            zero &= g.flatten(1).abs().amax(1) == 0
    return logits.detach(), loss.detach(), out, zero, missing


# -- counter-based per-row randomness ---------------------------------------------------------------

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, m: int) -> Tensor:
    """``x * m mod 2**32`` for x in [0, 2**32) held in int64, without overflowing int64."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _M32


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash with good avalanche (Wellons' "lowbias32"), on int64 tensors in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_uniform(seeds: Tensor, counter: Tensor, stream: int, n: int, device: torch.device) -> Tensor:
    """``n`` uniform numbers in [0, 1) per row (float64 ``[B, n]``, 32-bit resolution), a function of
    (seed, counter, stream, index) only.

    The same row gets the same numbers whatever rows it is batched with; different counters
    (e.g. iteration numbers) and streams give independent numbers.
    """
    seeds, counter = seeds.to(torch.int64).cpu(), counter.to(torch.int64).cpu()
    k = torch.arange(n, dtype=torch.int64)
    h = _hash32((k[None, :] + (stream & 0xFFFF) * 0x10000) & _M32)
    h = _hash32(h ^ (counter[:, None] & _M32))
    h = _hash32(h ^ ((counter[:, None] >> 32) & _M32))
    h = _hash32(h ^ (seeds[:, None] & _M32))
    h = _hash32(h ^ ((seeds[:, None] >> 32) & _M32))
    return (h.to(torch.float64) / float(1 << 32)).to(device)


# -- the engine --------------------------------------------------------------------------------------

class EngineAttack(Attack):
    """An attack that advances each sample by one model pass at a time (see the module docstring).

    Subclasses implement :meth:`begin`, :meth:`advance` and :meth:`adversarial`; :meth:`perturb`
    (one batch) and the evaluation (the whole evaluation set through :func:`run_engine`) then share
    one code path. ``audit`` collects gradient sanity counts over the attack's lifetime.
    """

    def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float],
                 bounds: Bounds | None = None, plausible: Plausible = None, norm: str = "linf") -> None:
        super().__init__(modalities, eps, bounds, plausible, norm=norm)
        self.audit = GradientAudit()

    @abc.abstractmethod
    def begin(self, model: Model, rows: Rows) -> tuple[State, Tensor]:
        """State for new ``rows`` and which of them are finished already (bool ``[B]``: e.g. misclassified clean)."""

    @abc.abstractmethod
    def advance(self, model: Model, rows: Rows, state: State) -> Tensor:
        """One model pass for every row; updates ``state`` in place (its entries may be replaced) and
        returns which rows are finished (bool ``[B]``)."""

    @abc.abstractmethod
    def adversarial(self, rows: Rows, state: State) -> Inputs:
        """The attacked modalities' adversarial values of (finished) ``rows``."""

    def row_metrics(self, rows: Rows, state: State) -> dict[str, Tensor]:
        """Per-row numbers the evaluation stores with the cell (float ``[B]`` each; e.g. FAB's budget factor)."""
        return {}

    def perturb(self, model: Model, inputs: Inputs, labels: Tensor, sample_seeds: Tensor | None = None) -> Inputs:
        rows = make_rows(inputs, labels, self.modalities, sample_seeds)
        adv = {m: t.clone() for m, t in rows.x.items()}
        for done in run_engine(self, model, [rows], capacity=max(len(rows), 1)):
            for m in adv:
                adv[m][done.rows.pos] = done.adversarial[m]
        return {**rows.fixed, **adv}


def make_rows(inputs: Inputs, labels: Tensor, modalities: Sequence[str], seeds: Tensor | None,
              pos: Tensor | None = None) -> Rows:
    """Split ``inputs`` into attacked and fixed modalities as :class:`Rows` (positions 0..B-1 by default)."""
    x = {m: inputs[m].detach() for m in modalities}
    fixed = {m: t for m, t in inputs.items() if m not in x}
    n = int(labels.shape[0])
    return Rows(x, fixed, labels, seeds, torch.arange(n, device=labels.device) if pos is None else pos)


@dataclass
class Finished:
    """Rows leaving the engine with their adversarial inputs (all modalities).

    ``untouched`` marks rows finished by :meth:`EngineAttack.begin`, before any attack step, whose
    returned input is their clean input (it was already misclassified, or the budget is zero); a row
    that ``begin`` already fooled with a perturbation (Square's starting stripes) is not untouched.
    """

    rows: Rows
    adversarial: Inputs
    untouched: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    metrics: dict[str, Tensor] = field(default_factory=dict)


def _unchanged(rows: Rows, adv: Inputs) -> Tensor:
    """Which rows' adversarial inputs are their clean inputs, bit for bit (bool ``[B]``, on the CPU)."""
    same = torch.ones(len(rows), dtype=torch.bool, device=rows.labels.device)
    for m, x in rows.x.items():
        same &= (adv[m] == x).flatten(1).all(1)
    return same.cpu()


def run_engine(attack: EngineAttack, model: Model, chunks: Iterable[Rows], capacity: int) -> Iterator[Finished]:
    """Attack every row of ``chunks``, keeping ``capacity`` rows in flight; yields rows as they finish.

    New chunks are read only when the active batch has free slots, so at most one chunk beyond the
    active batch is held in memory. Rows finish in any order; use :attr:`Rows.pos` to place them.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    source = iter(chunks)
    pending: tuple[Rows, State] | None = None
    active: tuple[Rows, State] | None = None
    exhausted = False
    while True:
        while not exhausted or pending is not None:
            free = capacity - (len(active[0]) if active is not None else 0)
            if free <= 0:
                break
            if pending is None:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                    break
                state, done = attack.begin(model, chunk)
                if bool(done.any()):
                    rows, st = chunk.take(done), take_state(state, done)
                    adv = attack.adversarial(rows, st)
                    yield Finished(rows, {**rows.fixed, **adv}, _unchanged(rows, adv), attack.row_metrics(rows, st))
                if bool(done.all()):
                    continue
                keep = ~done
                pending = (chunk.take(keep), take_state(state, keep))
            rows, state = pending
            if len(rows) <= free:
                moved, pending = pending, None
            else:
                head = torch.arange(free, device=rows.labels.device)
                tail = torch.arange(free, len(rows), device=rows.labels.device)
                moved = (rows.take(head), take_state(state, head))
                pending = (rows.take(tail), take_state(state, tail))
            active = moved if active is None else (Rows.cat([active[0], moved[0]]), cat_states([active[1], moved[1]]))
        if active is None or len(active[0]) == 0:
            return
        rows, state = active
        done = attack.advance(model, rows, state)
        if bool(done.any()):
            fin_rows, fin_state = rows.take(done), take_state(state, done)
            yield Finished(fin_rows, {**fin_rows.fixed, **attack.adversarial(fin_rows, fin_state)},
                           torch.zeros(len(fin_rows), dtype=torch.bool), attack.row_metrics(fin_rows, fin_state))
            keep = ~done
            active = (rows.take(keep), take_state(state, keep)) if bool(keep.any()) else None

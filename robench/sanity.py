"""Sanity checks of an evaluation: signs that an attack's number overstates robustness.

Two kinds, after AutoAttack's ``checks.py`` and Carlini et al. (2019, "On evaluating adversarial
robustness"), each explained with causes and fixes in ``docs/flags.md``:

* measured while a cell runs and stored with it (:class:`ModelChecks`, and the gradient audit of
  :class:`~robench.attacks.engine.GradientAudit`): a random forward pass, outputs that look like
  probabilities, input gradients that are identically zero or missing;
* read from the stored cells of one model (:func:`cross_cell_flags`): accuracy at eps 0 unlike
  clean, accuracy rising with eps, an iterative attack weaker than its one-step version, a very
  large eps not reaching chance, a black-box attack beating the white-box ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

Inputs = dict[str, Tensor]


@dataclass
class ModelChecks:
    """Checks of the model's forward pass on one batch of clean clips.

    ``random_forward``: two forwards of the same input differ (a randomised defense: use
    AutoAttack's ``rand`` version, EOT). ``probability_outputs``: every output row lies in [0, 1]
    and sums to 1, so the model ends in a softmax and cross-entropy gradients may vanish.
    ``reliance``: how often replacing one input by another clip's changes the prediction; a fused
    model that never changes ignores that input, and attacks on it (or robustness to them) say
    nothing about multimodal robustness.
    """

    random_forward: bool
    probability_outputs: bool
    classes: int = 0  # the model's number of outputs (chance = 1 / classes)
    #: per input of a two-input model: the fraction of the batch's clips whose prediction changes when
    #: that input is replaced by another clip's (0: the model ignores it); empty for one input, and for
    #: a batch on which the model predicts one class only
    reliance: dict[str, float] = field(default_factory=dict)
    #: clips the checks ran on
    clips: int = 0


#: a reliance check needs at least this many clips to say an input is ignored
RELIANCE_CLIPS = 8


def model_checks(model: Callable[[Inputs], Tensor], inputs: Inputs) -> ModelChecks:
    """Run the forward-pass checks on ``inputs`` (two forwards, and one per input of a two-input model
    with that input taken from the next clip of the batch; no gradients)."""
    with torch.no_grad():
        a = model(inputs).float()
        b = model(inputs).float()
        reliance: dict[str, float] = {}
        n = len(a)
        if len(inputs) > 1 and len(a.argmax(1).unique()) > 1:  # (a constant predictor ignores everything)
            for m, x in inputs.items():
                swapped = model({**inputs, m: x.roll(1, dims=0)}).float()
                reliance[m] = float((swapped.argmax(1) != a.argmax(1)).float().mean())
    prob = bool(a.min() >= 0) and bool(a.max() <= 1) and bool(((a.sum(1) - 1).abs() < 1e-4).all())
    return ModelChecks(random_forward=not torch.equal(a, b), probability_outputs=prob, classes=int(a.shape[1]),
                       reliance=reliance, clips=n)


# -- flags ------------------------------------------------------------------------------------------

#: every flag: its anchor in docs/flags.md and a one-line title
FLAGS: dict[str, str] = {
    "random-forward": "the forward pass is random",
    "probability-outputs": "the model outputs probabilities, not logits",
    "zero-gradients": "input gradients are identically zero for some clips",
    "missing-gradients": "an attacked input gets no gradient at all",
    "eps0-not-clean": "accuracy at eps 0 differs from clean accuracy",
    "accuracy-rises-with-eps": "accuracy rises with eps",
    "iterative-weaker": "an iterative attack is weaker than its one-step version",
    "large-eps-not-chance": "a very large eps does not reach chance",
    "black-box-stronger": "a black-box attack beats the white-box ones",
    "ignores-input": "the model's predictions do not depend on one of its inputs",
}
#: the fraction by which a black-box attack may beat the white-box ones before it is flagged
#: (AutoAttack's ``check_square_sr``: 0.2 percentage points)
BLACK_BOX_MARGIN = 0.002
#: eps (nominal, threat-model units) from which accuracy should be at chance (Carlini et al. 2019)
LARGE_EPS = 0.25


@dataclass(frozen=True)
class Flag:
    """A sanity flag raised on one stored cell: ``code`` (a key of :data:`FLAGS`) and what was seen."""

    code: str
    message: str

    @property
    def title(self) -> str:
        return FLAGS[self.code]

    @property
    def link(self) -> str:
        return f"docs/flags.md#{self.code}"

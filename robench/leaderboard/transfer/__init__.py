"""Black-box transfer between a track's entries: ``robench leaderboard transfer --track NAME``.

Each entry's model (the one its record was evaluated on: the model zoo, or built as ``robench leaderboard verify``
builds it) is attacked with the track's own PGD (its ``pgd`` attack, eps, threat scale, bounds and plausible limits,
random starts seeded per clip as the evaluation seeds them) and, when the track runs AutoAttack, with its first
member APGD-CE at the track's size, on each attacked scenario of the track, over the track's evaluated clips; the
adversarial inputs are then classified by every entry's model. The result, per (attack, source, target, scenario),
is one correctness bit per clip; the diagonal (source = target) is the white-box accuracy. A clip counts as
surviving a source when it survives every attack's adversarial clip from that source (:func:`bits` with no attack).

**The artefact** ``<root>/<track>/transfer.json`` (written atomically; never part of the sealed records, whose
schema it leaves alone) holds the track's name, version and digest, the clip count, each attack's identity, each
entry's model ids, the per-clip bits (base64 of packed bits, as records hold them) and a SHA-256 digest over the rest.
It is read back with every key checked (:func:`read_transfer`): a damaged or edited file is a :class:`TransferError`.

**The page.** When the artefact lies next to the records, the track's Markdown and HTML boards gain one section
(:func:`section`, rendered by :func:`markdown_section` and ``templates/_transfer.html.j2``; everything else byte for
byte as without it): the matrix on the ranking scenario (rows sources, columns targets,
accuracy %, the diagonal white-box), a link to the heatmap ``transfer.png``, and per target the lowest accuracy under
another entry's adversarial inputs ("Transfer (min)").

**The worst case.** Every other entry's adversarial clip is an attack inside the track's threat model (each was
checked against it when made), so transfer counts like any attack of the track: on the board, a clip that another
entry's adversarial version fools is not robust in that scenario (:func:`lowerings`), and the entry's column shows
the accuracy before and after (``35.00 → 31.25``) with a note naming the sources. The sealed records are left as
they are (their numbers are the entry's own evaluation, which ``verify`` re-checks); the board combines them with
this artefact, whose digest it checks, and uses a source or target only while its model ids are the records'.

One job per module: :mod:`~robench.leaderboard.transfer.artefact` (the file: format, checks, per-clip results),
:mod:`~robench.leaderboard.transfer.board` (lowered columns, notes, the page section) and
:mod:`~robench.leaderboard.transfer.compute` (attacking and classifying: the only one that imports torch, so
rendering a board does not). This package re-exports the first two.
"""

from robench.leaderboard.record import TRANSFER_FILE
from robench.leaderboard.transfer.artefact import (
    KEYS,
    KIND,
    TRANSFER_SCHEMA,
    TransferError,
    accuracy,
    attack_label,
    bits,
    digest_of,
    read_transfer,
    transfer_min,
    validate_transfer,
    write_transfer,
)
from robench.leaderboard.transfer.board import (
    HEADING,
    HEATMAP_FILE,
    Lowering,
    Section,
    current_models,
    lowering_notes,
    lowerings,
    markdown_section,
    page_scenario,
    section,
)

__all__ = [
    "HEADING",
    "HEATMAP_FILE",
    "KEYS",
    "KIND",
    "TRANSFER_FILE",
    "TRANSFER_SCHEMA",
    "Lowering",
    "Section",
    "TransferError",
    "accuracy",
    "attack_label",
    "bits",
    "current_models",
    "digest_of",
    "lowering_notes",
    "lowerings",
    "markdown_section",
    "page_scenario",
    "read_transfer",
    "section",
    "transfer_min",
    "validate_transfer",
    "write_transfer",
]

"""What a track's board makes of the transfer artefact: the columns other entries' adversarial clips lower
(:func:`lowerings`, counted in the worst case), the notes saying so, and the page section with the matrix
(:func:`section`, :func:`markdown_section`; HTML in ``templates/_transfer.html.j2``). No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robench.leaderboard.record import CORRUPTION_KIND, TRANSFER_FILE, challenged_columns, kind_of
from robench.leaderboard.tracks import SCENARIO_LABELS, Track
from robench.leaderboard.transfer.artefact import accuracy, attack_label, bits, transfer_min

#: the heatmap's file name in a track's folder (the artefact's is :data:`~robench.leaderboard.record.TRANSFER_FILE`)
HEATMAP_FILE = "transfer.png"
#: the heading of the page section
HEADING = "Transfer between entries (black-box)"


@dataclass(frozen=True, eq=False)
class Lowering:
    """One entry's column that other entries' adversarial clips lowered (black-box transfer): its accuracy (%) under
    the track's attacks and accepted challenges (``before``) and with transfer too (``after``), the clips transfer
    broke (positions in the track's clips), how many of those each source's clips fool (by source name), and the
    per-clip results after (``bits``)."""

    scenario: str
    before: float
    after: float
    broken: list[int]
    sources: dict[str, int]
    bits: np.ndarray


def current_models(data: dict[str, Any], records: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The artefact's entries whose records (``{entry id: verified record}``) list the same model ids (usable), and
    those whose records now list others (stale: the entry was added again after the transfer was computed)."""
    usable: list[str] = []
    stale: list[str] = []
    for eid, info in data["models"].items():
        if eid in records:
            same = list(records[eid]["provenance"].get("model_ids") or []) == list(info["model_ids"])
            (usable if same else stale).append(eid)
    return usable, stale


def lowerings(data: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Lowering]]:
    """``{target entry id: {scenario: Lowering}}``: for each verified attack record (``{entry id: record}``) the
    artefact lists with the same models, and each scenario of the artefact, the clips robust under the track's attacks
    and accepted challenges that some other usable entry's adversarial clip fools; entries and scenarios transfer
    lowered nothing are absent."""
    usable, _ = current_models(data, records)
    out: dict[str, dict[str, Lowering]] = {}
    for scenario in data["scenarios"]:
        matrix = bits(data, scenario)
        for target in usable:
            if kind_of(records[target]) == CORRUPTION_KIND:
                continue
            column = challenged_columns(records[target]).get(scenario)
            sources = [s for s in usable if s != target]
            if column is None or not sources or column.size != int(data["clips"]["count"]):
                continue
            fooled = {s: ~matrix[s][target] for s in sources}
            broken = column & np.logical_or.reduce(list(fooled.values()))
            if not broken.any():
                continue
            after = column & ~broken
            counts = {str(data["models"][s]["name"]): int((broken & f).sum()) for s, f in fooled.items()}
            out.setdefault(target, {})[scenario] = Lowering(
                scenario, 100.0 * float(column.mean()), 100.0 * float(after.mean()),
                [int(i) for i in np.flatnonzero(broken)], {k: v for k, v in counts.items() if v}, after)
    return out


def lowering_notes(data: dict[str, Any], records: dict[str, dict[str, Any]],
                   lowered: dict[str, dict[str, Lowering]]) -> list[str]:
    """The board's notes on transfer: one per lowered column, and one naming stale entries (left out of it)."""
    notes = []
    for target, by_scenario in lowered.items():
        for scenario, low in by_scenario.items():
            n = len(low.broken)
            said = ", ".join(f"{name} {count}" for name, count in sorted(low.sources.items(), key=lambda kv: (-kv[1],
                                                                                                             kv[0])))
            notes.append(f"{records[target]['entry']['name']}: {SCENARIO_LABELS.get(scenario, scenario)} "
                         f"{low.before:.2f} → {low.after:.2f}, lowered by {n} clip{'s' if n != 1 else ''} that other "
                         f"entries' {attack_label(data)} adversarial clips fool (black-box transfer, "
                         f"{TRANSFER_FILE}; clips fooled per source: {said}).")
    _, stale = current_models(data, records)
    if stale:
        names = ", ".join(str(records[e]["entry"]["name"]) for e in stale)
        notes.append(f"{TRANSFER_FILE} was computed on other models of {names} (added again since): they are left "
                     "out of transfer until robench leaderboard transfer runs again.")
    if missing := [e for e in records if e not in data["models"] and kind_of(records[e]) != CORRUPTION_KIND]:
        names = ", ".join(str(records[e]["entry"]["name"]) for e in missing)
        notes.append(f"{TRANSFER_FILE} does not hold {names} (added since): no transfer to or from them until "
                     "robench leaderboard transfer runs again.")
    return notes


# -- the page ---------------------------------------------------------------------------------------------

def page_scenario(track: Track, data: dict[str, Any]) -> str | None:
    """The scenario the page shows: the track's ranking one if the artefact has it, else its first."""
    return track.rank_by if track.rank_by in data["scenarios"] else (data["scenarios"] or [None])[0]


def _note(track: Track, data: dict[str, Any], scenario: str) -> str:
    label = SCENARIO_LABELS.get(scenario, scenario)
    eps = next(iter(data["attacks"].values()))["eps"]
    return (f"Each row's model was attacked white-box by the track's {attack_label(data)} on {label} (eps {eps}, "
            "random starts seeded per clip), and every column's model classified those adversarial clips: "
            "accuracy %, a clip counting only if the model gets each attack's version right; the diagonal (bold) is "
            "white-box. Transfer (min): the lowest "
            "accuracy of a model under another entry's adversarial clips (black-box). Transfer counts in the worst "
            "case: a clip another entry's adversarial version fools is not robust (the notes above say which "
            "columns it lowered). Made by robench leaderboard transfer "
            f"({TRANSFER_FILE}, digest {str(data['digest'])[:19]}…).")


@dataclass(frozen=True)
class Section:
    """What the board shows of a transfer artefact: the matrix on :func:`page_scenario` (rows sources, columns
    targets, accuracy %), and per target its white-box accuracy and its lowest transfer accuracy with the source."""

    heading: str
    label: str
    note: str
    heads: list[str]
    matrix: list[list[str]]  # [source name, accuracy on each target...]
    ids: list[str]  # the entry id of each column (and row), in order: names need not be unique
    summary: list[list[str]]  # [target name, white-box, transfer (min), from]
    heatmap: str = HEATMAP_FILE


def section(track: Track, data: dict[str, Any]) -> Section | None:
    """The board's transfer section of a validated artefact (None if it has no scenario to show)."""
    scenario = page_scenario(track, data)
    if scenario is None:
        return None
    ids = list(data["models"])
    name = {i: data["models"][i]["name"] for i in ids}
    acc = accuracy(data, scenario)
    lows = transfer_min(data, scenario)
    matrix = [[name[s]] + [f"{acc[s][t]:.2f}" for t in ids] for s in ids]
    summary = [[name[t], f"{acc[t][t]:.2f}", "–" if (low := lows[t]) is None else f"{low[0]:.2f}",
                "–" if low is None else name[low[1]]] for t in ids]
    return Section(HEADING, SCENARIO_LABELS.get(scenario, scenario), _note(track, data, scenario),
                   [name[t] for t in ids], matrix, ids, summary)


def markdown_section(sec: Section) -> str:
    """The section as Markdown, appended to the track's Markdown board."""

    def md(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["", f"## {sec.heading}, {sec.label}", "", sec.note, "",
             "| Source \\ Target | " + " | ".join(map(md, sec.heads)) + " |",
             "|---|" + "---:|" * len(sec.heads)]
    for i, row in enumerate(sec.matrix):
        cells = [f"**{c}**" if j == i + 1 else c for j, c in enumerate(row)]
        lines.append("| " + md(cells[0]) + " | " + " | ".join(cells[1:]) + " |")
    lines += ["", "| Model | White-box | Transfer (min) | From |", "|---|---:|---:|---|"]
    lines += [f"| {md(r[0])} | {r[1]} | {r[2]} | {md(r[3])} |" for r in sec.summary]
    lines += ["", f"![Transfer heatmap on {sec.label}]({sec.heatmap})", ""]
    return "\n".join(lines)

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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench.attacks.autoattack import VERSIONS as AUTOATTACK_VERSIONS
from robench.errors import RobenchError
from robench.files import atomic_file, atomic_write
from robench.leaderboard.record import (
    CORRUPTION_KIND,
    TRANSFER_FILE,
    challenged_columns,
    decode_bits,
    encode_bits,
    kind_of,
    read_record,
    record_files,
)
from robench.leaderboard.tracks import SCENARIO_LABELS, Track
from robench.scenarios import ATTACKED_SCENARIOS, SCENARIOS

#: the heatmap's file name in a track's folder (the artefact's is :data:`~robench.leaderboard.record.TRANSFER_FILE`)
HEATMAP_FILE = "transfer.png"
#: the artefact's format version
TRANSFER_SCHEMA = 2
KIND = "robench-transfer"
KEYS = ("schema", "kind", "track", "clips", "attacks", "scenarios", "models", "cells", "digest")
#: the heading of the page section (the marker :func:`with_section` inserts it by)
HEADING = "Transfer between entries (black-box)"


class TransferError(RobenchError):
    """A transfer artefact that is damaged, edited or of another track: it is not used."""


# -- the artefact ---------------------------------------------------------------------------------------

def digest_of(data: dict[str, Any]) -> str:
    """SHA-256 of the artefact's canonical JSON without its ``digest``."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                 ensure_ascii=True).encode()).hexdigest()


def _fail(where: str, said: str) -> TransferError:
    return TransferError(f"transfer file {where}: {said}; run robench leaderboard transfer again")


def validate_transfer(data: Any, where: str, track: Track | None = None) -> dict[str, Any]:
    """``data`` checked as a transfer artefact (every key, type, bit string and the digest; with ``track``, made for
    it); a :class:`TransferError` naming the first fault."""
    if not isinstance(data, dict):
        raise _fail(where, "not a JSON object")
    if data.get("schema") != TRANSFER_SCHEMA or data.get("kind") != KIND:
        raise _fail(where, f"schema {data.get('schema')!r} / kind {data.get('kind')!r}; allowed: {TRANSFER_SCHEMA} / "
                    f"{KIND}")
    if sorted(data) != sorted(KEYS):
        raise _fail(where, f"keys {sorted(data)}; allowed: {', '.join(KEYS)}")
    if data["digest"] != digest_of(data):
        raise _fail(where, "its digest does not match its content (the file was edited or damaged)")
    t = data["track"]
    if not isinstance(t, dict) or not all(isinstance(t.get(k), str) for k in ("name", "digest")):
        raise _fail(where, "key 'track' must hold the track's name and digest")
    if track is not None and (t["name"] != track.name or t["digest"] != track.digest):
        raise _fail(where, f"made for track {t['name']} ({str(t['digest'])[:19]}…), not {track.name} "
                    f"v{track.version} ({track.digest[:19]}…)")
    clips = data["clips"]
    if not isinstance(clips, dict) or not isinstance(clips.get("count"), int) or isinstance(clips["count"], bool) \
            or clips["count"] < 1:
        raise _fail(where, "key 'clips.count' must be a positive integer")
    n = int(clips["count"])
    models = data["models"]
    if not isinstance(models, dict) or not models or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("model_ids"), list)
            for v in models.values()):
        raise _fail(where, "key 'models' must map entry ids to {name, model_ids}")
    scenarios = data["scenarios"]
    if not isinstance(scenarios, list) or not scenarios or any(s not in ATTACKED_SCENARIOS for s in scenarios):
        raise _fail(where, f"key 'scenarios' is {scenarios!r}; allowed: a list of R, S, RS")
    attacks = data["attacks"]
    if not isinstance(attacks, dict) or not attacks or not all(
            isinstance(a, dict) and set(a) == {"type", "label", "params", "eps"} and isinstance(a["label"], str)
            and isinstance(a["type"], str) and isinstance(a["params"], dict) and isinstance(a["eps"], (str, int, float))
            for a in attacks.values()):
        raise _fail(where, "key 'attacks' must map each source attack's key to {type, label, params, eps}")
    cells = data["cells"]
    if not isinstance(cells, dict) or sorted(cells) != sorted(attacks):
        raise _fail(where, "key 'cells' must hold one set of matrices per attack")
    for a, per in cells.items():
        if not isinstance(per, dict) or sorted(per) != sorted(scenarios):
            raise _fail(where, f"key 'cells.{a}' must hold one matrix per scenario")
        for s, matrix in per.items():
            if not isinstance(matrix, dict) or sorted(matrix) != sorted(models):
                raise _fail(where, f"key 'cells.{a}.{s}' must have one row per model")
            for src, row in matrix.items():
                if not isinstance(row, dict) or sorted(row) != sorted(models):
                    raise _fail(where, f"key 'cells.{a}.{s}.{src}' must have one column per model")
                for tgt, text in row.items():
                    key = f"cells.{a}.{s}.{src}.{tgt}"
                    if not isinstance(text, str):
                        raise _fail(where, f"key '{key}' is not a bit string")
                    try:
                        decode_bits(text, n, where, key)
                    except RobenchError as exc:
                        raise TransferError(str(exc)) from None
    return data


def read_transfer(path: str | Path, track: Track | None = None) -> dict[str, Any]:
    """Read and validate a transfer artefact (:func:`validate_transfer`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(str(path), f"not readable JSON ({type(exc).__name__})") from None
    return validate_transfer(data, str(path), track)


def write_transfer(path: Path, data: dict[str, Any]) -> Path:
    """Write an artefact atomically, its digest set."""
    data = {**{k: v for k, v in data.items() if k != "digest"}}
    data["digest"] = digest_of(data)
    validate_transfer(data, str(path))
    return atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def bits(data: dict[str, Any], scenario: str, attack: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{source: {target: per-clip correctness}}`` of a validated artefact on ``scenario``: under ``attack``'s
    adversarial clips, or (None) under every attack's (a clip counts only if the target gets each one right)."""
    n = int(data["clips"]["count"])
    keys = [attack] if attack is not None else list(data["attacks"])
    out: dict[str, dict[str, np.ndarray]] = {}
    for a in keys:
        for s, row in data["cells"][a][scenario].items():
            for t, text in row.items():
                got = decode_bits(text, n)
                row_out = out.setdefault(s, {})
                row_out[t] = row_out[t] & got if t in row_out else got
    return out


def accuracy(data: dict[str, Any], scenario: str, attack: str | None = None) -> dict[str, dict[str, float]]:
    """``{source: {target: accuracy %}}`` on ``scenario`` (under ``attack``, or every attack: :func:`bits`)."""
    return {s: {t: 100.0 * float(b.mean()) for t, b in row.items()}
            for s, row in bits(data, scenario, attack).items()}


def attack_label(data: dict[str, Any]) -> str:
    """The source attacks' labels, joined: ``PGD-20 and APGD-CE``."""
    return " and ".join(str(a["label"]) for a in data["attacks"].values())


def transfer_min(data: dict[str, Any], scenario: str,
                 among: list[str] | None = None) -> dict[str, tuple[float, str] | None]:
    """Per target, the lowest accuracy under another entry's adversarial inputs (every attack's) on ``scenario`` and
    that source (None with a single entry); ``among`` limits targets and sources to those entries."""
    acc = accuracy(data, scenario)
    ids = list(data["models"]) if among is None else [e for e in data["models"] if e in among]
    out: dict[str, tuple[float, str] | None] = {}
    for t in ids:
        others = [(acc[s][t], s) for s in ids if s != t]
        out[t] = min(others) if others else None
    return out


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


# -- computing it -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceAttack:
    """One attack transfer runs on every source model: its key in the artefact, its identity (type, label,
    parameters as the track gives them) and how to build it on a scenario's modalities."""

    key: str
    type: str
    label: str
    params: dict[str, Any]
    build: Callable[[list[str]], Any]


def _plain(params: Any) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in dict(params).items()}


def source_attacks(track: Track, protocol: Any) -> list[SourceAttack]:
    """The attacks transfer runs: the track's PGD (its ``pgd`` attack, else its first of type pgd) and, when the
    track runs AutoAttack with APGD-CE, that member at the track's size (its steps, eps and threat model)."""
    from robench.registry import ATTACKS

    variant = next(iter(protocol.variants.values()))
    threat = variant.threat

    def builder(component: Any, member: str | None = None) -> Callable[[list[str]], Any]:
        def build(mods: list[str]) -> Any:
            attack = ATTACKS.build(component.type, **threat.attack_kwargs(component, mods, track.eps))
            return attack if member is None else dict(attack.stages())[member]
        return build

    pgd = [(k, a.attack) for k, a in variant.attacks.items() if a.attack.type == "pgd"]
    if not pgd:
        raise RobenchError("the track has no PGD attack (type: pgd) to transfer")
    key, component = next(((k, c) for k, c in pgd if k == "pgd"), pgd[0])
    out = [SourceAttack(key, component.type, str(track.data["attacks"][key].get("label", key)),
                        _plain(component.params), builder(component))]
    for k, a in variant.attacks.items():
        component = a.attack
        if component.type == "autoattack":
            version = str(component.params.get("version", "standard"))
            if "apgd-ce" in (component.params.get("members") or AUTOATTACK_VERSIONS.get(version, ())):
                steps = component.params.get("steps", 100)
                out.append(SourceAttack("apgd-ce", "apgd-ce", f"APGD-CE ({steps} steps)",
                                        {"member of": k, **_plain(component.params)}, builder(component, "apgd-ce")))
            break
    return out


def compute(track: Track, folder: Path, cache: Path, device: torch.device, scenarios: list[str] | None = None,
            progress: str = "quiet", say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The transfer artefact of the verified records under ``folder`` (see the module docstring); not written."""
    from robench.api import dataset
    from robench.data.base import to_model_inputs
    from robench.hashing import derive_seed
    from robench.leaderboard.challenge import entry_model, predictions
    from robench.leaderboard.commands import entry_of
    from robench.leaderboard.entry import load_entry
    from robench.leaderboard.evaluate import entry_protocol, model_code_errors

    if track.kind == CORRUPTION_KIND:
        raise RobenchError(f"track {track.name} is a corruption track: there are no attacks to transfer")
    chosen = scenarios or track.attacked
    if bad := [s for s in chosen if s not in track.attacked or s not in ATTACKED_SCENARIOS]:
        raise RobenchError(f"transfer --scenario {', '.join(bad)}: the track attacks {', '.join(track.attacked)}")
    records: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in record_files(folder):
        record = read_record(path)
        if record["status"] != "verified" or kind_of(record) == CORRUPTION_KIND \
                or record["track"]["digest"] != track.digest:
            continue
        records[str(record["entry"]["id"])] = (path, record)
    if not records:
        raise RobenchError(f"no verified records of track {track.name} v{track.version} under {folder}")
    models: dict[str, Any] = {}
    entries: dict[str, Any] = {}
    for eid, (path, record) in records.items():
        models[eid] = entry_model(record, path, track, cache, device, progress)
        entries[eid] = load_entry(entry_of(record, path))
    protocol = entry_protocol(next(iter(entries.values())), track)
    sources = source_attacks(track, protocol)
    seed = int(track.data["evaluation"].get("seed") or 0)
    batch_size = int(track.data["evaluation"].get("batch_size") or 32)
    clips = dataset(track.path, split=str(track.data["evaluation"]["split"]), cache=cache / "data")
    n = len(clips)
    ids = list(range(n))
    correct: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]] = {}
    for source, scenario in ((a, s) for a in sources for s in chosen):
        attack = source.build(list(SCENARIOS[scenario]))
        cells = correct.setdefault(source.key, {}).setdefault(scenario, {})
        for src, model in models.items():
            if say:
                say(f"{source.label} on {SCENARIO_LABELS.get(scenario, scenario)}: attacking {src}")
            adv_parts: dict[str, list[torch.Tensor]] = {}
            labels_parts = []
            for start in range(0, n, batch_size):
                idx = clips.indices[start:start + batch_size]
                batch = clips.clips.get_batch(idx)
                inputs = to_model_inputs(batch, device)
                labels = batch["label"].to(device, dtype=torch.int64)
                seeds = torch.tensor([derive_seed(seed, int(i)) for i in idx], dtype=torch.int64)
                with model_code_errors(entries[src]):
                    adv = attack(model, inputs, labels, seeds)
                for m, x in adv.items():
                    adv_parts.setdefault(m, []).append(x.detach().cpu())
                labels_parts.append(labels.cpu())
            adv_all = {m: torch.cat(xs) for m, xs in adv_parts.items()}
            labels_all = torch.cat(labels_parts)
            cells[src] = {}
            for tgt, target in models.items():
                pred = predictions(target, adv_all, batch_size, device, f"{src}'s adversarial inputs", ids)
                cells[src][tgt] = (pred == labels_all).numpy().astype(bool)
    return {
        "schema": TRANSFER_SCHEMA, "kind": KIND,
        "track": {"name": track.name, "version": track.version, "digest": track.digest},
        "clips": {"count": n, "digest": track.clips.get("digest")},
        "attacks": {a.key: {"type": a.type, "label": a.label, "params": a.params, "eps": track.data["eps"]}
                    for a in sources},
        "scenarios": list(chosen),
        "models": {eid: {"name": str(r["entry"]["name"]), "model_ids": list(r["provenance"].get("model_ids") or [])}
                   for eid, (_, r) in records.items()},
        "cells": {a: {s: {src: {tgt: encode_bits(b) for tgt, b in row.items()} for src, row in m.items()}
                      for s, m in per.items()} for a, per in correct.items()},
    }


def heatmap(data: dict[str, Any], scenario: str, path: Path) -> Path:
    """The matrix on ``scenario`` as a PNG heatmap (accuracy %, rows sources, columns targets), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(data["models"])
    names = [data["models"][i]["name"] for i in ids]
    acc = accuracy(data, scenario)
    grid = np.array([[acc[s][t] for t in ids] for s in ids])
    size = 1.0 + 0.7 * len(ids)
    fig, ax = plt.subplots(figsize=(size + 2.5, size + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(ids)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(ids)), names)
    ax.set_xlabel("target (classifies)")
    ax.set_ylabel("source (attacked, white-box)")
    for i in range(len(ids)):
        for j in range(len(ids)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i, j] < 60 else "black", fontweight="bold" if i == j else "normal")
    label = SCENARIO_LABELS.get(scenario, scenario)
    ax.set_title(f"{attack_label(data)} transfer on {label}, accuracy %")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def run_transfer(root: Path, track: Track, cache: Path, device: torch.device, scenarios: list[str] | None = None,
                 progress: str = "quiet", say: Callable[[str], None] | None = None) -> list[Path]:
    """``robench leaderboard transfer``: compute and write the artefact and the heatmap; returns the files written."""
    folder = root / track.name
    data = compute(track, folder, cache, device, scenarios, progress, say)
    written = [write_transfer(folder / TRANSFER_FILE, data)]
    scenario = page_scenario(track, data)
    if scenario is not None:
        written.append(heatmap(data, scenario, folder / HEATMAP_FILE))
    return written


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



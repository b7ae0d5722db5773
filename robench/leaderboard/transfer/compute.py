"""Computing the transfer artefact: ``robench leaderboard transfer --track NAME`` attacks every entry's model with
the track's own attacks and classifies the adversarial clips with every other entry's model (see
:mod:`robench.leaderboard.transfer`); also draws the heatmap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench.attacks.autoattack import VERSIONS as AUTOATTACK_VERSIONS
from robench.errors import RobenchError
from robench.files import atomic_file
from robench.leaderboard.record import CORRUPTION_KIND, TRANSFER_FILE, encode_bits, kind_of, read_record, record_files
from robench.leaderboard.tracks import SCENARIO_LABELS, Track
from robench.leaderboard.transfer.artefact import KIND, TRANSFER_SCHEMA, accuracy, attack_label, write_transfer
from robench.leaderboard.transfer.board import HEATMAP_FILE, page_scenario
from robench.scenarios import ATTACKED_SCENARIOS, SCENARIOS


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

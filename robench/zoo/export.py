"""Exporting a track's evaluated models into zoo weights: how the weights robench ships were made.

For every verified record of a track (``<leaderboard>/<track>/<entry>.json``) whose entry is a protocol's model,
the model the record was made of (its ``provenance.model_ids``, planned again from the entry and checked) is read
from the model cache (``<cache>/models/<id>/model.pt``, ``torch.load(weights_only=True)``), written as safetensors
(the state dict only) and listed in the track's manifest with its digest and size::

    python -m robench.zoo.export --track synthetic --leaderboard leaderboard --cache results/cache \\
        --out robench/zoo/weights/synthetic

Tracks that evaluate the same models (the synthetic track's plausible-skeleton and corruption tracks) share the
files: ``--share robench/zoo/weights/synthetic`` lists, for each entry whose model id that manifest already has, its
file by a path relative to this manifest (``../synthetic/amr.safetensors``) instead of writing a copy::

    python -m robench.zoo.export --track synthetic-plausible --out robench/zoo/weights/synthetic-plausible \\
        --share robench/zoo/weights/synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from robench.errors import RobenchError
from robench.files import atomic_write
from robench.leaderboard.entry import ProtocolModel
from robench.zoo.fetch import WeightsSpec
from robench.zoo.manifest import MANIFEST, MANIFEST_SCHEMA, ZooEntry
from robench.zoo.weights import FORMATS


def export_track(track: str, leaderboard: Path, cache: Path, out: Path, share: Path | None = None) -> dict[str, Any]:
    """Write ``<out>/<entry>.safetensors`` for each protocol entry with a verified record, and ``<out>/manifest.json``;
    returns the manifest. With ``share`` (another track's zoo folder), an entry whose model that folder's manifest
    already lists names that file instead of a copy."""
    from robench.leaderboard.commands import entry_of
    from robench.leaderboard.entry import load_entry
    from robench.leaderboard.record import read_record, record_files
    from robench.train.files import load_tensors
    from robench.zoo.load import planned_job
    from robench.zoo.manifest import read_manifest
    from robench.zoo.weights import write_safetensors

    shared: dict[str, dict[str, Any]] = {}
    if share is not None:  # (read as the zoo reads it: every key checked)
        rel = Path(os.path.relpath(share, out))
        shared = {e.model_id: {"sha256": e.weights.sha256, "format": e.weights.format, "size": e.weights.size,
                               "source": (rel / e.weights.source).as_posix()}
                  for e in read_manifest(share / MANIFEST).values()}

    records = record_files(leaderboard / track)
    if not records:
        raise RobenchError(f"no records of track {track} under {leaderboard}")
    entries: dict[str, Any] = {}
    for path in records:
        record = read_record(path)
        if record["status"] != "verified":
            continue
        entry = load_entry(entry_of(record, path.resolve()))
        if not isinstance(entry.model, ProtocolModel):
            print(f"skipped {entry.id}: not a protocol's model", file=sys.stderr)
            continue
        model = ProtocolModel(_bundled_name(entry.model.protocol), entry.model.defense, entry.model.profile,
                              entry.model.dataset)
        spec = WeightsSpec("0" * 64, "safetensors", f"{entry.id}.safetensors")
        job = planned_job(ZooEntry(track, entry.id, entry.name, spec, model, "", out / MANIFEST))
        if job.id not in record["provenance"]["model_ids"]:
            raise RobenchError(f"record {path}: lists models {record['provenance']['model_ids']}, the entry plans "
                               f"{job.id}; add the entry again")
        if job.id in shared:
            weights = dict(shared[job.id])
        else:
            source = cache / "models" / job.id / "model.pt"
            state = load_tensors(source, "cached model", f"train it again (robench leaderboard add {entry.path})")
            target = out / f"{entry.id}.{FORMATS['safetensors']}"
            digest = write_safetensors(target, state, {"robench_model_id": job.id, "track": track, "entry": entry.id})
            weights = {"sha256": digest, "format": "safetensors", "size": target.stat().st_size, "source": target.name}
        entries[entry.id] = {"name": entry.name, "weights": weights,
                             "model": {"protocol": model.protocol, "defense": model.defense,
                                       "profile": model.profile, "dataset": model.dataset},
                             "model_id": job.id}
        print(f"{entry.id}: model {job.id}, {weights['size']} bytes, sha256:{weights['sha256']} "
              f"({weights['source']})", file=sys.stderr)
    manifest = {"schema": MANIFEST_SCHEMA, "track": track, "entries": entries}
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _bundled_name(protocol: str) -> str:
    """A bundled protocol's name (``synthetic/defenses``) for a protocol an entry named by its bundled file's path."""
    from robench.protocol.load import bundled_protocols

    given = Path(protocol)
    for name, path in bundled_protocols().items():
        if given.is_file() and Path(path).resolve() == given.resolve():
            return name
    if given.is_file():
        raise RobenchError(f"protocol {protocol} is not a bundled protocol: a zoo entry must name one")
    return protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robench.zoo.export", description=__doc__.splitlines()[0])
    parser.add_argument("--track", required=True)
    parser.add_argument("--leaderboard", default="leaderboard")
    parser.add_argument("--cache", default="results/cache")
    parser.add_argument("--out", required=True)
    parser.add_argument("--share", help="another track's zoo folder whose files this track's entries may name")
    args = parser.parse_args(argv)
    try:
        export_track(args.track, Path(args.leaderboard), Path(args.cache), Path(args.out),
                     Path(args.share) if args.share else None)
    except RobenchError as exc:
        print(f"robench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

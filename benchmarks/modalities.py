"""Does each modality of a dataset carry the class? Clean accuracy of RGB-only, skeleton-only and fused models.

Trains three undefended models with robench itself, at the size of a protocol (default: the
quickstart), on held-out performers: the fused two-stream model, an RGB-only model (``model:
{skeleton: null}``) and a skeleton-only one (``model: {rgb: null}``), and prints their clean
accuracy with 95% Wilson intervals beside chance. A multimodal benchmark needs both unimodal
models well above chance (issue 10's targets at quickstart scale: RGB >= 70%, skeleton >= 85%,
fused >= the better of the two).

    python benchmarks/modalities.py [--protocol quickstart] [--set KEY=VALUE ...] [--keep DIR]
                                    [--only rgb_only,skeleton_only]

e.g. ``--set dataset.train_clips_per_class=120 --set training.epochs=20 --only rgb_only`` trains the
RGB stream alone with more data and epochs; ``--set model.rgb.stem_stride=2`` tries I3D's reference stem.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

from timing import recorded

REPO = Path(__file__).resolve().parent.parent

#: the rows: one undefended model per input combination
ROWS = {
    "fused": {"type": "none", "label": "Fused (RGB + skeleton)"},
    "rgb_only": {"type": "none", "label": "RGB only", "model": {"skeleton": None}},
    "skeleton_only": {"type": "none", "label": "Skeleton only", "model": {"rgb": None}},
}
#: what is taken from the base protocol: the data, the models and how they are trained and evaluated
KEPT = ("seeds", "dataset", "datasets", "model", "training", "threat", "evaluation", "plugins")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quickstart")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="protocol overrides")
    parser.add_argument("--keep", help="keep the store and cache in this folder (default: a temporary one)")
    parser.add_argument("--only", help=f"comma-separated rows to train (default: all of {', '.join(ROWS)})")
    args = parser.parse_args()
    rows_wanted = args.only.split(",") if args.only else list(ROWS)
    if unknown := sorted(set(rows_wanted) - set(ROWS)):
        sys.exit(f"--only: unknown row(s) {', '.join(unknown)}; allowed: {', '.join(ROWS)}")

    from robench.cli import main as robench
    from robench.protocol.load import load_raw
    from robench.report.metrics import wilson_interval
    from robench.run_layout import RunLayout
    from robench.store import ResultsStore

    raw = load_raw(args.protocol, args.set).data
    data = {k: v for k, v in raw.items() if k in KEPT}
    data.update(name="modalities", description="clean accuracy of fused, RGB-only and skeleton-only models",
                defenses={k: ROWS[k] for k in rows_wanted}, attacks={}, scenarios=["clean"], tables=[])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        protocol = folder / "modalities.yaml"
        protocol.write_text(yaml.safe_dump(data, sort_keys=False))
        store = folder / "store.sqlite"
        t0 = time.perf_counter()
        if robench(["run", str(protocol), "--store", str(store), "--progress", "quiet"]) != 0:
            sys.exit("robench run failed")
        seconds = time.perf_counter() - t0
        rows = ResultsStore(store).dataframe()
        classes = next(iter(ResultsStore(store).models().values()))["spec"]["num_classes"]
        layout = RunLayout.from_json(ResultsStore(store).latest_runs()["modalities"]["layout"])
        by_model = {m.model_id: m.defense for m in layout.models}
    print(f"\n{'model':<26}{'clean %':>9}  95% interval     n")
    for _, r in rows.iterrows():
        lo, hi = wilson_interval(int(r["correct"]), int(r["n"]))
        print(f"{by_model[r['model_id']]:<26}{100 * r['accuracy']:>9.2f}  [{100 * lo:5.1f}, {100 * hi:5.1f}]  {r['n']}")
    print(f"chance: {100 / classes:.2f}% ({classes} classes); {seconds:.0f} s wall for training and evaluation")


if __name__ == "__main__":
    with recorded("modalities"):
        main()

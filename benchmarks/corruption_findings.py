"""Does the ranking of the paper's eight defenses survive natural corruptions? Clean accuracy against the
mean accuracy over corruptions and severities, on the same clips.

Reads one results store holding a run of the ``corruptions`` protocol (``robench run corruptions --profile
synthetic --set evaluation.max_samples=64``; its models are table2's) and prints, per dataset:

* per defense: clean accuracy, the mean over every corruption and severity, the mean per input (RGB
  corruptions, skeleton corruptions) and the accuracy with each input missing;
* the ranking by clean accuracy and by mean corrupted accuracy, neighbours grouped as the leaderboard
  groups them (``2=``: not separated from the entry above by an exact McNemar test at p < 0.05). For the
  corrupted ranking the paired test pools every (clip, corruption, severity): the same corrupted clips
  for every defense, though not independent draws (one clip appears under every corruption), so its
  p-values are optimistic;
* per defense, the exact McNemar test of its mean corrupted accuracy against the baseline row's.

    python benchmarks/corruption_findings.py [--store results/synthetic-autoattack.sqlite]
"""

from __future__ import annotations

import argparse

import numpy as np

from timing import recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="results/synthetic-autoattack.sqlite")
    parser.add_argument("--protocol", default="corruptions", help="the run's protocol name (before any @profile)")
    args = parser.parse_args()

    from robench.leaderboard.ranking import mcnemar_exact, rank
    from robench.report.tables import select_runs
    from robench.store import ResultsStore, unpack_bits

    store = ResultsStore(args.store, read_only=True)
    layout = next(v for k, v in select_runs(store, None).items() if k.split("@")[0] == args.protocol)
    cells = store.cells(layout.cell_ids())

    def bits(cell_id: str) -> np.ndarray | None:
        cell = cells.get(cell_id)
        return None if cell is None else unpack_bits(cell["per_sample"], cell["n"])

    with recorded("corruption_findings"):
        print(f"store {args.store}: run {layout.name}")
        for vid, v in layout.variants.items():
            suite = v.corruptions
            if suite is None:
                continue
            print(f"\n## {v.label}\n")
            print(f"{'defense':<16}{'clean':>8}{'corrupt':>9}{'RGB c.':>8}{'skel c.':>9}{'no RGB':>8}{'no skel':>9}"
                  f"{'p vs base':>11}")
            clean: dict[str, np.ndarray] = {}
            pooled: dict[str, np.ndarray] = {}
            parts: dict[str, dict[str, list[np.ndarray]]] = {}
            for ref in layout.cells:
                if ref.variant == vid and ref.attack is None and (x := bits(ref.cell_id)) is not None:
                    clean[ref.defense] = x
            for ref in sorted(layout.corruption_cells, key=lambda r: (r.corruption, r.severity)):
                info = suite.corruptions[ref.corruption]
                x = bits(ref.cell_id)
                if ref.variant != vid or x is None:
                    continue
                weight = 1 if info.graded else len(suite.severities)  # a one-level corruption counts at every level
                group = parts.setdefault(ref.defense, {})
                for _ in range(weight):
                    group.setdefault("all", []).append(x)
                    if info.family != "missing":
                        group.setdefault(info.modality, []).append(x)
                if info.type in ("rgb-missing", "skeleton-missing"):
                    group[info.type] = [x]
            for d, group in parts.items():
                pooled[d] = np.concatenate(group["all"])
            base = suite.baseline
            for d, ref in v.defenses.items():
                if d not in pooled or d not in clean:
                    continue
                g = parts[d]

                def pct(key: str, g: dict[str, list[np.ndarray]] = g) -> str:
                    return f"{100 * np.concatenate(g[key]).mean():.2f}" if key in g else "–"

                p = mcnemar_exact(pooled[d], pooled[base])[0] if d != base else float("nan")
                print(f"{ref.label:<16}{100 * clean[d].mean():>8.2f}{100 * pooled[d].mean():>9.2f}{pct('rgb'):>8}"
                      f"{pct('skeleton'):>9}{pct('rgb-missing'):>8}{pct('skeleton-missing'):>9}"
                      f"{'' if d == base else f'{p:.3g}':>11}")
            labels = {d: v.defenses[d].label for d in pooled}
            for name, data in (("clean", clean), ("mean over corruptions", pooled)):
                keep = {labels[d]: x for d, x in data.items() if d in pooled}
                ranked = rank({k: float(x.mean()) for k, x in keep.items()}, keep)
                print(f"\nranking by {name}: " + "; ".join(f"{r.label} {r.key} {100 * r.score:.2f}" for r in ranked))
        print("\ncorrupt: mean over every corruption and severity (one-level ones at every severity); "
              "RGB c. / skel c.: over the corruptions of that input, missing inputs aside; "
              "no RGB / no skel: the input all zeros; "
              "p vs base: exact McNemar test of the pooled corrupted clips against the baseline row.")


if __name__ == "__main__":
    main()

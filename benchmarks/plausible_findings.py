"""How much of the skeleton's apparent robustness survives plausibility limits? The paper's eight defenses
under PGD-20 at eps 8/255, with the plain L-inf skeleton ball and with plausible adversarial skeletons.

Reads one results store holding both runs (``autoattack --profile synthetic`` for the L-inf PGD-20 cells,
``plausible --profile synthetic --set evaluation.max_samples=64`` for the plausible ones: the same
models, the same 64 clips per dataset), and prints, per dataset and defense:

* XS and XRS accuracy under each threat model, with the exact McNemar test on the same clips (does the
  limit change the result of this model, beyond chance?);
* the ranking of the eight defenses by XRS under each (paired tests between neighbours, as the
  leaderboard ranks: ``2=`` shares a rank with a neighbour it is not separated from at p < 0.05);
* how plausible the L-inf attack's successful adversarial skeletons were (bone-length violation rate,
  mean displacement in cm), i.e. what the unconstrained numbers rest on.

    python benchmarks/plausible_findings.py [--store results/synthetic-autoattack.sqlite]
"""

from __future__ import annotations

import argparse

import numpy as np

from timing import recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="results/synthetic-autoattack.sqlite")
    parser.add_argument("--attack", default="pgd", help="the attack id both protocols share (default: PGD-20)")
    args = parser.parse_args()

    from robench.leaderboard.ranking import mcnemar_exact, rank
    from robench.report.plausibility import final_values
    from robench.report.tables import select_runs
    from robench.store import ResultsStore, unpack_bits
    from robench.store.details import details_of

    store = ResultsStore(args.store, read_only=True)
    runs = select_runs(store, None)
    plain = next(v for k, v in runs.items() if k.startswith("autoattack"))
    limited = next(v for k, v in runs.items() if k.startswith("plausible"))
    cells = store.cells(plain.cell_ids() | limited.cell_ids())

    def lookup(layout, variant, defense, scenario):  # type: ignore[no-untyped-def]
        for ref in layout.cells:
            if (ref.variant, ref.defense, ref.attack, ref.scenario) == (variant, defense, args.attack, scenario):
                return cells.get(ref.cell_id)
        return None

    with recorded("plausible_findings"):
        print(f"store {args.store}: runs {plain.name} (L-inf) and {limited.name} (plausible skeletons)")
        for variant, vl in plain.variants.items():
            print(f"\n## {vl.label}\n")
            print(f"{'defense':<16}{'XS L-inf':>10}{'XS plaus.':>11}{'p':>8}{'XRS L-inf':>11}{'XRS plaus.':>12}"
                  f"{'p':>8}{'bones %':>9}{'cm':>7}")
            scores: dict[str, dict[str, float]] = {"L-inf": {}, "plausible": {}}
            bits: dict[str, dict[str, np.ndarray]] = {"L-inf": {}, "plausible": {}}
            for defense, ref in vl.defenses.items():
                row = [f"{ref.label:<16}"]
                for scenario in ("S", "RS"):
                    a, b = lookup(plain, variant, defense, scenario), lookup(limited, variant, defense, scenario)
                    if a is None or b is None:
                        row.append(f"{'–':>10}{'–':>11}{'':>8}")
                        continue
                    x, y = unpack_bits(a["per_sample"], a["n"]), unpack_bits(b["per_sample"], b["n"])
                    assert x is not None and y is not None
                    p, _, _ = mcnemar_exact(y, x)
                    width = 10 if scenario == "S" else 11
                    row.append(f"{100 * x.mean():>{width}.2f}{100 * y.mean():>{width + 1}.2f}{p:>8.3f}")
                    if scenario == "RS":
                        for name, v in (("L-inf", x), ("plausible", y)):
                            scores[name][ref.label], bits[name][ref.label] = float(v.mean()), v
                        details = details_of(a)
                        fooled = details.broken_by >= 1 if details is not None else np.zeros(0, bool)
                        if details is not None and fooled.any():
                            bone = final_values(details, "bone_violations")[fooled]
                            cm = final_values(details, "mean_displacement_cm")[fooled]
                            row.append(f"{100 * np.nanmean(bone):>9.1f}{np.nanmean(cm):>7.2f}")
                print("".join(row))
            for name in ("L-inf", "plausible"):
                ranked = rank(scores[name], bits[name])
                print(f"\nranking by XRS, {name}: " + "; ".join(f"{r.label} {r.key} {100 * r.score:.2f}"
                                                               for r in ranked))
        print("\np: exact McNemar test, L-inf vs plausible on the same clips; bones % and cm: the L-inf XRS "
              "attack's fooled clips (bone-length violation rate against a 1% tolerance; mean joint displacement).")


if __name__ == "__main__":
    main()

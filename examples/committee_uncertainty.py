"""Does a committee know when it is wrong? Force spread against actual force error.

Evaluates a committee preset on held-out GFN2-xTB frames (by default the shipped ethanol
committee at the training temperature, 500 K, and far outside it, 1200 K), then reports the
Spearman rank correlation between each atom's committee force spread and its actual force
error, and how far the spread under- or overestimates the error (the factor that calibrates it:
mean error / mean spread), and draws the scatter plot.

    .venv/bin/python examples/committee_uncertainty.py [--preset ethanol-committee] [--out committee.png]
    .venv/bin/python examples/committee_uncertainty.py --preset organic-committee \
        --sets "held-out NCI molecules=datasets/nci-xtb/test-v2.h5" "drug-like, 400 K=datasets/nci-xtb/druglike-2.h5" \
        --out potentials/organic-xtb-committee/spread_vs_error.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import gdlphys
from gdlphys.data import read_hdf5

ROOT = Path(__file__).resolve().parent.parent
SETS = {"500 K (training temperature)": "datasets/ethanol-xtb/test.h5", "1200 K (outside training)": "datasets/ethanol-xtb/hot.h5"}


def spread_and_error(calc, path: Path) -> tuple[np.ndarray, np.ndarray]:
    spreads, errors = [], []
    for atoms in read_hdf5(path):
        reference = atoms.get_forces()
        atoms.calc = calc
        predicted = atoms.get_forces()
        spreads.append(calc.results["forces_std"])
        errors.append(np.linalg.norm(predicted - reference, axis=1))
    return np.concatenate(spreads), np.concatenate(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ethanol-committee")
    parser.add_argument("--sets", nargs="+", default=[f"{label}={path}" for label, path in SETS.items()],
                        help="frames to score, LABEL=PATH (HDF5, relative to the repository root)")
    parser.add_argument("--out", default=str(ROOT / "potentials" / "ethanol-xtb-committee" / "spread_vs_error.png"))
    args = parser.parse_args()
    sets = dict(item.rsplit("=", 1) for item in args.sets)
    calc = gdlphys.load_calculator(args.preset)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    all_s, all_e = [], []
    for label, name in sets.items():
        s, e = spread_and_error(calc, ROOT / name)
        all_s.append(s)
        all_e.append(e)
        rho = spearmanr(s, e).statistic
        print(f"{label}: {len(s)} atoms, mean spread {1000 * s.mean():.1f} meV/Å, mean |error| {1000 * e.mean():.1f} meV/Å, "
              f"error/spread {e.mean() / s.mean():.2f}, Spearman rho {rho:.3f}")
        ax.scatter(1000 * s, 1000 * e, s=3, alpha=0.4, label=f"{label}, ρ = {rho:.2f}")
    s, e = np.concatenate(all_s), np.concatenate(all_e)
    rho = spearmanr(s, e).statistic
    print(f"all: {len(s)} atoms, Spearman rho {rho:.3f}, calibration factor (mean error / mean spread) {e.mean() / s.mean():.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("committee force spread per atom (meV/Å)")
    ax.set_ylabel("actual force error per atom (meV/Å)")
    ax.set_title(f"{args.preset} vs GFN2-xTB (all atoms: Spearman ρ = {rho:.2f})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()

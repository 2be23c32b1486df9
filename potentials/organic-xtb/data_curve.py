"""What more molecules buy: gdlphys train's defaults from scratch on the first 250, 500, 1,000 and
2,000 training molecules of nci-xtb v2 (every frame of each), the same CPU-time budget each, one
thread, then the errors on test-v2 (150 molecules in no training set).

    .venv/bin/python potentials/organic-xtb/data_curve.py -o runs/data-curve            # runs and plots
    .venv/bin/python potentials/organic-xtb/data_curve.py -o runs/data-curve --plot-only

Each size is one `examples/finetune_vs_scratch.py --methods scratch` run (its `--clock cpu`
budget counts the process's CPU time, so runs beside other jobs stay comparable); two can run at
once (`--parallel 2`, one per core). The subsets are the first molecules of `train-v2.h5` (the
recipe's chunks of 250 in order). Writes OUT/data_curve.json and the plot (default
OUT/data_curve.png).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "nci-xtb"
FRAMES_PER_MOLECULE = 12


def subset(n_molecules: int, out: Path) -> Path:
    """The first ``n_molecules`` training molecules of nci-xtb v2 with all their frames (train-v2.h5
    holds the recipe's chunks of 250 molecules in order)."""
    from gdlphys.data import read_hdf5, write_hdf5
    from gdlphys.data.hdf5 import FrameReader

    path = out / "data" / f"train-{n_molecules}.h5"
    if path.is_file():
        return path
    with FrameReader(DATA / "train-v2.h5") as reader:
        smiles = [reader.smiles(k) for k in range(len(reader))]
    first: dict[str, int] = {}
    for s in smiles:
        first.setdefault(s, len(first))
    if len(first) < n_molecules:
        raise ValueError(f"train-v2.h5 holds {len(first)} molecules, fewer than {n_molecules}")
    keep = [k for k, s in enumerate(smiles) if first[s] < n_molecules]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_hdf5(path, read_hdf5(DATA / "train-v2.h5", index=keep), method="GFN2-xTB", software="tblite",
               attrs={"subset_of": f"nci-xtb v2 train-v2.h5, first {n_molecules} molecules"})
    return path


def command(n_molecules: int, out: Path, budget: str) -> list[str]:
    return [sys.executable, str(ROOT / "examples" / "finetune_vs_scratch.py"), "--potential", "organic-xtb", "--methods", "scratch",
            "--new-train", str(subset(n_molecules, out)), "--new-valid", str(DATA / "valid-v2.h5"),
            "--new-test", str(DATA / "test-v2.h5"), "--new-unseen", "", "--original-test", str(DATA / "test.h5"),
            "--sizes", str(n_molecules * FRAMES_PER_MOLECULE), "--budget", budget, "--clock", "cpu", "--curve-points", "4",
            "-o", str(out / f"mol-{n_molecules}")]


def collect(out: Path, sizes: list[int]) -> dict:
    rows = []
    for n in sizes:
        found = out / f"mol-{n}" / "comparison.json"
        if not found.is_file():
            continue
        results = json.loads(found.read_text())
        run = results["runs"][0]
        test = run["final"]["test"]
        rows.append({"molecules": n, "frames": run["size"], "epochs": run["epochs"], "steps": run["steps"],
                     "train_cpu_s": run["train_seconds"], "train_wall_s": run["train_wall_seconds"],
                     "forces_mae": test["forces_mae"], "energy_per_atom_mae": test["energy_per_atom_mae"],
                     "budget": results["budget"], "clock": results["clock"]})
    return {"test": str(DATA / "test-v2.h5"), "runs": rows}


def plot(curve: dict, output: Path) -> None:
    from gdlphys.figures import save_figure, subplots

    rows = curve["runs"]
    fig, (left, right) = subplots(1, 2, figsize=(9, 3.6))
    molecules = [r["molecules"] for r in rows]
    left.plot(molecules, [1000 * r["forces_mae"] for r in rows], "o-")
    right.plot(molecules, [1000 * r["energy_per_atom_mae"] for r in rows], "o-", color="tab:orange")
    for r, y in zip(rows, [1000 * r["forces_mae"] for r in rows]):
        left.annotate(f"{r['epochs']} ep.", (r["molecules"], y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    for ax, label in ((left, "test-v2 force MAE (meV/Å)"), (right, "test-v2 energy MAE (meV/atom)")):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(molecules, [str(m) for m in molecules])
        ax.set_ylim(bottom=0, top=1.15 * max(line.get_ydata().max() for line in ax.get_lines()))
        ax.set_xlabel("training molecules (12 frames each)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    budget = rows[0]["budget"] if rows else "?"
    fig.suptitle(f"gdlphys train defaults from scratch, {budget} of CPU time each, one thread")
    fig.tight_layout()
    save_figure(fig, output)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000], help="training molecules")
    p.add_argument("--budget", default="20m", help="CPU time per run")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (one thread each)")
    p.add_argument("--plot-only", action="store_true", help="collect the finished runs and plot")
    p.add_argument("--plot", type=Path, default=None, help="default OUT/data_curve.png")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    if not args.plot_only:
        pending = [n for n in args.sizes if not (args.output / f"mol-{n}" / "comparison.json").is_file()]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        while pending:
            batch, pending = pending[: args.parallel], pending[args.parallel :]
            running = [subprocess.Popen(command(n, args.output, args.budget), env=env) for n in batch]
            if any(process.wait() != 0 for process in running):
                return 1
    curve = collect(args.output, args.sizes)
    (args.output / "data_curve.json").write_text(json.dumps(curve, indent=1))
    plot(curve, args.plot or args.output / "data_curve.png")
    for r in curve["runs"]:
        print(f"{r['molecules']:>5} molecules: forces {1000 * r['forces_mae']:.1f} meV/Å, energy "
              f"{1000 * r['energy_per_atom_mae']:.2f} meV/atom ({r['epochs']} epochs, {r['steps']} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

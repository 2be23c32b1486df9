"""Molecules per minute through ``gdlphys predict`` at its defaults, beside GFN2-xTB doing the same work alone.

The first N test molecules of nci-xtb v2 (held out of every training split). gdlphys:
``predict(smiles)`` at its defaults (5 RDKit conformers, each relaxed by BFGS to fmax 0.005 eV/Å,
the lowest kept, autograd Hessian, thermochemistry; a worker process per idle core). GFN2-xTB
alone: the same conformers, the same relaxation and thermochemistry through tblite, with a
finite-difference Hessian (what ``--reference xtb`` computes), on as many worker processes of one
thread. Both answer every molecule or say why not; the script also compares their answers
(heavy-atom RMSD of the minima, |Δ| of the frequencies and of the free energy), and asks how many
conformers the search needs: with the first k of the conformers (k = 1 ... --conformers), how
often xTB's own lowest minimum of the k is within 1 kcal/mol of its lowest of all, and how often
the start the potential picks (its lowest of the k) is one whose xTB minimum is (both methods
relax the same RDKit starts, so a start's xTB energy tells which basin it leads to).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/predict_throughput.py [--molecules 100] [--out predict_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"fmax": 0.005, "max_steps": 1000, "temperature_k": 298.15, "pressure_pa": 101325.0}


def xtb_properties(job: tuple[str, int, int]) -> dict:
    """One molecule through the predict pipeline with GFN2-xTB (in a worker of one thread)."""
    from gdlphys.data.label import tblite_calculator
    from gdlphys.molecules import smiles_to_atoms
    from gdlphys.predict import properties_of

    smiles, conformers, seed = job
    try:
        atoms = smiles_to_atoms(smiles, n_conformers=conformers, seed=seed)
        return properties_of(atoms, tblite_calculator("GFN2-xTB"), hessian="finite-differences", **OPTIONS)
    except (ValueError, RuntimeError, FloatingPointError) as err:
        return {"error": str(err)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=100, help="how many held-out test SMILES (nci-xtb split-v2.json)")
    parser.add_argument("--potential", default=None, help="default: predict's own (organic-xtb)")
    parser.add_argument("--conformers", type=int, default=5)
    parser.add_argument("--processes", type=int, default=None, help="xTB workers (default: as many as predict chose)")
    parser.add_argument("--out", type=Path, default=Path("predict_throughput.json"))
    args = parser.parse_args()

    from gdlphys.molecules import heavy_atom_rmsd
    from gdlphys.predict import default_processes, predict

    smiles = json.loads((ROOT / "datasets" / "nci-xtb" / "split-v2.json").read_text())["test"][: args.molecules]
    processes = args.processes or default_processes(len(smiles), "cpu", 1, None)
    print(f"{len(smiles)} molecules; predict at its defaults, then GFN2-xTB alone on {processes} processes", file=sys.stderr)

    started = time.perf_counter()
    ours = predict(smiles, args.potential, conformers=args.conformers)
    ours_s = time.perf_counter() - started

    started = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        xtb = list(pool.map(xtb_properties, [(s, args.conformers, 0) for s in smiles]))
    xtb_s = time.perf_counter() - started

    rmsd, dg, dfreq = [], [], []
    for r, x in zip(ours, xtb):
        if r.error or "error" in x:
            continue
        rmsd.append(heavy_atom_rmsd(np.array(r.numbers), np.array(r.positions), np.array(x["positions"])))
        dg.append(abs(r.gibbs_ev - x["gibbs_ev"]))
        dfreq.append(float(np.mean(np.abs(np.sort(r.frequencies_cm1) - np.sort(x["frequencies_cm1"])))))
    kcal = 0.0433641  # eV
    found_xtb, found_ours = np.zeros(args.conformers), np.zeros(args.conformers)
    counted = 0
    for r, x in zip(ours, xtb):
        if r.error or "error" in x or len(x["conformer_energies"]) != len(r.conformer_energies):
            continue  # (RDKit may embed fewer starts than asked for a rigid molecule: k beyond them is all of them)
        e_x, e_p = np.array(x["conformer_energies"]), np.array(r.conformer_energies)
        counted += 1
        for k in range(1, args.conformers + 1):
            found_xtb[k - 1] += e_x[:k].min() - e_x.min() < kcal
            found_ours[k - 1] += e_x[int(np.argmin(e_p[:k]))] - e_x.min() < kcal
    report = {
        "molecules": len(smiles), "conformers": args.conformers, "processes": processes, "cores": os.cpu_count(),
        "gdlphys": {"seconds": ours_s, "molecules_per_minute": 60 * len(smiles) / ours_s,
                    "answered": sum(r.error is None for r in ours), "errors": [r.error for r in ours if r.error]},
        "xtb": {"seconds": xtb_s, "molecules_per_minute": 60 * len(smiles) / xtb_s,
                "answered": sum("error" not in x for x in xtb), "errors": [x["error"] for x in xtb if "error" in x]},
        "speedup": xtb_s / ours_s,
        "agreement": {"both_answered": len(rmsd), "heavy_atom_rmsd_median_A": float(np.median(rmsd)) if rmsd else None,
                      "heavy_atom_rmsd_mean_A": float(np.mean(rmsd)) if rmsd else None,
                      "share_same_minimum_0.1A": float(np.mean(np.array(rmsd) < 0.1)) if rmsd else None,
                      "free_energy_abs_diff_mean_ev": float(np.mean(dg)) if dg else None,
                      "frequency_mae_cm1_mean": float(np.mean(dfreq)) if dfreq else None},
        "conformers_needed": {"molecules": counted, "k": list(range(1, args.conformers + 1)),
                              "xtb_lowest_of_k_is_lowest_of_all": (found_xtb / max(counted, 1)).tolist(),
                              "potential_pick_of_k_is_in_xtb_lowest_basin": (found_ours / max(counted, 1)).tolist()},
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The card's figures for organic-xtb: drug-like molecules in no split of nci-xtb, against GFN2-xTB.

Run from the repository root (about 10 minutes on one core):
    .venv/bin/python potentials/organic-xtb/evaluate.py [--potential organic-xtb] [--out potentials/organic-xtb]
    .venv/bin/python potentials/organic-xtb/evaluate.py --potential organic-committee --out runs/committee-eval
(a committee preset of ase_calculators/: its mean relaxes, its mean forces and dipoles are scored)

For each molecule of DRUGLIKE (none of them in datasets/nci-xtb/split.json or split-v2.json):
- MD frames: GFN2-xTB Langevin MD at 400 K (tblite), 10 frames 10 fs apart -> force and dipole
  errors of the potential (the frames are kept in datasets/nci-xtb/druglike-2.h5; druglike.h5
  holds version 1's set, with caffeine and nicotine);
- one RDKit conformer relaxed by the potential and, from the same start, by GFN2-xTB
  (BFGS, fmax 0.005 eV/Å) -> heavy-atom RMSD after optimal superposition, dipole at each
  method's minimum, and the potential's |dipole| at the xTB minimum against xTB's;
- harmonic frequencies at each method's own minimum (autograd Hessian for the potential,
  finite differences for xTB) -> mean absolute error of the sorted frequencies.
Writes evaluation.json and evaluation.png (predicted against reference for each property).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
from gdlphys.molecules import heavy_atom_rmsd  # noqa: E402
from gdlphys.units import DEBYE_PER_E_ANGSTROM as DEBYE  # noqa: E402
DRUGLIKE = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "theophylline": "Cn1c2nc[nH]c2c(=O)n(C)c1=O",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",  # naproxen and atenolol replaced caffeine and nicotine,
    "atenolol": "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1",  # which nci-xtb v2's training split holds
    "benzocaine": "CCOC(=O)c1ccc(N)cc1",
    "sulfanilamide": "Nc1ccc(cc1)S(N)(=O)=O",
    "fluorouracil": "O=c1[nH]cc(F)c(=O)[nH]1",
    "chlorzoxazone": "O=c1[nH]c2cc(Cl)ccc2o1",
    "metronidazole": "Cc1ncc(n1CCO)[N+](=O)[O-]",
    "phenacetin": "CCOc1ccc(NC(C)=O)cc1",
    "methyl salicylate": "COC(=O)c1ccccc1O",
}


def check_held_out() -> None:
    from rdkit import Chem

    seen = set()
    for name in ("split.json", "split-v2.json"):
        split = json.loads((ROOT / "datasets" / "nci-xtb" / name).read_text())
        seen |= {Chem.CanonSmiles(s) for smiles in split.values() for s in smiles}
    inside = [name for name, s in DRUGLIKE.items() if Chem.CanonSmiles(s) in seen]
    if inside:
        raise SystemExit(f"{inside} are in the nci-xtb splits: not held out")


def md_frames(path: Path) -> Path:
    from gdlphys.data.label import label_smiles

    if not path.exists():
        result = label_smiles(list(DRUGLIKE.values()), path, frames=10, temperature=400.0, stride=20, seed=7, progress=True)
        if result.failures:
            raise SystemExit(f"labelling failed: {result.failures}")
    return path


def frame_errors(potential, path: Path) -> dict:
    from gdlphys.train.evaluate import evaluate_potential

    result = evaluate_potential(potential, path, dtype=None)
    return {"metrics": result.metrics, "forces": result.forces, "dipole": result.dipole}


def calculator_frame_errors(calc, path: Path) -> dict:
    """frame_errors through an ASE calculator (a committee's mean), frame by frame."""
    from gdlphys.data import read_hdf5

    forces, energies, dipoles = ([], []), [], ([], [])
    for atoms in read_hdf5(path):
        ref_forces, ref_energy, ref_dipole = atoms.get_forces(), atoms.get_potential_energy(), atoms.get_dipole_moment()
        atoms.calc = calc
        forces[0].append(ref_forces)
        forces[1].append(atoms.get_forces())
        energies.append(abs(atoms.get_potential_energy() - ref_energy) / len(atoms))
        dipoles[0].append(ref_dipole)
        dipoles[1].append(atoms.get_dipole_moment())
    f_ref, f_pred = np.concatenate(forces[0]), np.concatenate(forces[1])
    d_ref, d_pred = np.array(dipoles[0]), np.array(dipoles[1])
    metrics = {
        "n_frames": len(energies), "forces_mae": float(np.mean(np.abs(f_pred - f_ref))), "energy_per_atom_mae": float(np.mean(energies)),
        "dipole_mae": float(np.mean(np.abs(d_pred - d_ref))),
        "dipole_debye_norm_mae": float(np.mean(np.abs(np.linalg.norm(d_pred, axis=1) - np.linalg.norm(d_ref, axis=1)))) * DEBYE,
    }
    return {"metrics": metrics, "forces": (f_ref, f_pred), "dipole": (d_ref, d_pred)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potential", default="organic-xtb")
    parser.add_argument("--out", default=str(ROOT / "potentials" / "organic-xtb"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_held_out()

    from gdlphys.models.files import load_potential
    from gdlphys.predict import predict
    from gdlphys.figures import save_figure, subplots

    from ase import Atoms

    from gdlphys.calculator import GDLCalculator
    from gdlphys.presets import names_a_preset, read_preset

    frames_path = md_frames(ROOT / "datasets" / "nci-xtb" / "druglike-2.h5")
    if names_a_preset(args.potential):  # a committee: its mean, as predict and MD use it
        calc = GDLCalculator(list(read_preset(args.potential).potentials), dtype="float64")
        frames = calculator_frame_errors(calc, frames_path)
    else:
        potential = load_potential(args.potential)
        calc = GDLCalculator(potential, dtype="float64")
        frames = frame_errors(potential, frames_path)
    results = predict(list(DRUGLIKE.values()), args.potential, conformers=1, reference="xtb", progress=True)

    rows, freq_ref, freq_pred, dip_ref, dip_pred = [], [], [], [], []
    for name, r in zip(DRUGLIKE, results):
        if r.error:
            rows.append({"name": name, "smiles": r.smiles, "error": r.error})
            continue
        ref = r.reference
        numbers = np.array(r.numbers)
        rmsd = heavy_atom_rmsd(numbers, np.array(r.positions), np.array(ref["positions"]))
        f_pred, f_ref = np.sort(r.frequencies_cm1), np.sort(ref["frequencies_cm1"])
        freq_pred.extend(f_pred)
        freq_ref.extend(f_ref)
        row = {
            "name": name,
            "smiles": r.smiles,
            "n_atoms": len(numbers),
            "heavy_atom_rmsd": rmsd,
            "frequency_mae_cm1": float(np.mean(np.abs(f_pred - f_ref))),
            "n_imaginary": r.n_imaginary,
            "error": None,
        }
        if r.dipole is not None:
            at_xtb = Atoms(numbers=numbers, positions=ref["positions"])
            at_xtb.calc = calc
            row["dipole_debye_at_xtb_minimum"] = float(np.linalg.norm(at_xtb.get_dipole_moment()) * DEBYE)
            row["dipole_debye"] = r.dipole_debye
            row["dipole_debye_xtb"] = float(np.linalg.norm(ref["dipole"]) * DEBYE)
            row["dipole_error_debye"] = float(np.linalg.norm(np.subtract(r.dipole, ref["dipole"])) * DEBYE)
            dip_pred.append(row["dipole_debye"])
            dip_ref.append(row["dipole_debye_xtb"])
        rows.append(row)

    good = [row for row in rows if row["error"] is None]
    m = frames["metrics"]
    summary = {
        "potential": str(args.potential),
        "molecules": len(DRUGLIKE),
        "failed": [row["name"] for row in rows if row["error"]],
        "md_frames": m["n_frames"],
        "md_forces_mae_meV_per_A": 1000 * m["forces_mae"],
        "md_energy_per_atom_mae_meV": 1000 * m["energy_per_atom_mae"],
        "md_dipole_component_mae_eA": m.get("dipole_mae"),
        "md_dipole_norm_mae_debye": m.get("dipole_debye_norm_mae"),
        "md_dipole_vector_error_debye": (
            float(np.mean(np.linalg.norm(frames["dipole"][1] - frames["dipole"][0], axis=1)) * DEBYE)
            if frames["dipole"] is not None else None
        ),
        "relaxed_heavy_atom_rmsd_mean_A": float(np.mean([r["heavy_atom_rmsd"] for r in good])),
        "dipole_norm_mae_at_xtb_minimum_debye": (
            float(np.mean([abs(r["dipole_debye_at_xtb_minimum"] - r["dipole_debye_xtb"]) for r in good]))
            if good and "dipole_debye_at_xtb_minimum" in good[0] else None
        ),
        "relaxed_dipole_error_debye_mean": (
            float(np.mean([r["dipole_error_debye"] for r in good])) if good and "dipole_error_debye" in good[0] else None
        ),
        "frequency_mae_cm1": float(np.mean(np.abs(np.subtract(freq_pred, freq_ref)))) if freq_pred else None,
        "per_molecule": rows,
    }
    (out / "evaluation.json").write_text(json.dumps(summary, indent=1) + "\n")

    fig, axes = subplots(1, 4, figsize=(19, 4.6))
    panels = [
        (axes[0], frames["forces"][0].ravel(), frames["forces"][1].ravel(), "MD force components (eV/Å)"),
        (axes[2], np.array(freq_ref), np.array(freq_pred), "harmonic frequencies (cm⁻¹)"),
    ]
    if frames["dipole"] is not None:
        panels.append((axes[1], frames["dipole"][0].ravel() * DEBYE, frames["dipole"][1].ravel() * DEBYE, "MD dipole components (D)"))
    for ax, ref, pred, label in panels:
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.scatter(ref, pred, s=5, alpha=0.5)
        ax.set_title(f"{label}\nMAE {np.mean(np.abs(pred - ref)):.3g}", fontsize=9)
        ax.set_xlabel("GFN2-xTB")
        ax.set_ylabel(str(args.potential))
    axes[3].barh([r["name"] for r in good], [r["heavy_atom_rmsd"] for r in good])
    axes[3].axvline(0.05, color="grey", ls="--", lw=1)
    axes[3].set_xlabel("heavy-atom RMSD to the xTB minimum (Å)")
    axes[3].set_title("relaxed geometry", fontsize=9)
    fig.suptitle(f"{args.potential} on {len(DRUGLIKE)} held-out drug-like molecules vs GFN2-xTB")
    fig.tight_layout()
    save_figure(fig, out / "evaluation.png")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_molecule"}, indent=1))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()

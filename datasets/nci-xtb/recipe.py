"""Build datasets/nci-xtb: GFN2-xTB-labelled MD frames of NCI molecules that RDKit ships.

Run from the repository root:  .venv/bin/python datasets/nci-xtb/recipe.py [--workers 2]

1. Molecules: ``rdkit/Data/NCI/first_5K.smi`` in file order, kept if they parse as one
   neutral closed-shell molecule (gdlphys.molecules.parse_smiles), contain only
   H C N O F S Cl, have 3-16 heavy atoms and at most 34 atoms with hydrogens;
   duplicates (same canonical SMILES) dropped. The kept list is shuffled with
   seed 0 and split **by molecule**: train / valid / test (sizes below); the
   split is written to ``split.json`` beside the data.
2. Frames: per molecule two independent trajectories (two ETKDG conformers, other
   seeds), Langevin MD on GFN2-xTB (tblite) at 300 K and at 600 K, 0.5 fs steps,
   100 equilibration steps, then one frame every 20 steps (10 fs), 6 frames each:
   12 frames per molecule with energy, forces and dipole. To fit a 2-core CPU budget only
   the first HOT_TRAIN training molecules get the 600 K trajectory (the others 6 frames at 300 K).
3. Output: train.h5, valid.h5, test.h5 (gdlphys HDF5). Resumable: a killed run
   picks up where it stopped (per molecule and temperature, see gdlphys.data.label).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
ELEMENTS = {"H", "C", "N", "O", "F", "S", "Cl"}
SIZES = {"train": 200, "valid": 20, "test": 30}
HOT_TRAIN = 100  # training molecules that also get the 600 K trajectory (CPU budget)
TEMPERATURES = (300.0, 600.0)
LABEL = dict(frames=6, stride=20, timestep_fs=0.5, equilibration_steps=100)


def candidate_smiles() -> list[str]:
    from rdkit import Chem, RDConfig

    from gdlphys.molecules import parse_smiles

    kept, seen = [], set()
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        smiles = line.split()[0]
        try:
            mol = parse_smiles(smiles)
        except ValueError:
            continue
        symbols = {atom.GetSymbol() for atom in mol.GetAtoms()}
        heavy = sum(atom.GetAtomicNum() > 1 for atom in mol.GetAtoms())
        if not symbols <= ELEMENTS or not 3 <= heavy <= 16 or mol.GetNumAtoms() > 34:
            continue
        canonical = Chem.MolToSmiles(Chem.RemoveHs(mol))
        if canonical in seen:
            continue
        seen.add(canonical)
        kept.append(canonical)
    return kept


def split_molecules() -> dict[str, list[str]]:
    smiles = candidate_smiles()
    random.Random(0).shuffle(smiles)
    need = sum(SIZES.values())
    if len(smiles) < need:
        raise SystemExit(f"only {len(smiles)} molecules pass the filter, {need} needed")
    split, start = {}, 0
    for name, size in SIZES.items():
        split[name] = smiles[start : start + size]
        start += size
    return split


def _label_part(job: tuple[str, list[str], float, int]) -> str:
    from gdlphys.data.label import label_smiles

    name, smiles, temperature, seed = job
    out = HERE / "parts" / f"{name}-{int(temperature)}K.h5"
    out.parent.mkdir(exist_ok=True)
    result = label_smiles(smiles, out, temperature=temperature, seed=seed, progress=False, **LABEL)
    for failure in result.failures:
        print(f"  skipped {failure.smiles}: {failure.reason}", flush=True)
    print(f"{out.name}: {result.n_frames} frames of {result.n_molecules} molecules", flush=True)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="labelling processes (one core each)")
    args = parser.parse_args()

    from gdlphys.data.hdf5 import read_hdf5
    from gdlphys.data.hdf5_writer import FrameWriter
    from gdlphys.data.label import tblite_version

    split = split_molecules()
    (HERE / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    print({name: len(smiles) for name, smiles in split.items()}, "molecules")
    # Jobs of ~50 molecules so two workers stay busy; each (split, temperature, chunk) resumes on its own.
    jobs = []
    for name, smiles in split.items():
        for t, temperature in enumerate(TEMPERATURES):
            n = HOT_TRAIN if name == "train" and temperature > 300 else len(smiles)
            for c in range(0, n, 50):
                seed = 1000 * (list(SIZES).index(name) + 1) + 10 * t + c // 50
                jobs.append((f"{name}-{c // 50:02d}", smiles[c : c + 50], temperature, seed))
    jobs.sort(key=lambda job: not job[0].startswith(("valid", "test")))  # held-out sets first: smallest
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        parts = list(pool.map(_label_part, jobs))
    software = f"tblite {tblite_version()}"
    for name in SIZES:
        mine = [Path(p) for p in parts if Path(p).name.startswith(name + "-")]
        with FrameWriter(HERE / f"{name}.h5", method="GFN2-xTB", software=software) as writer:
            for part in sorted(mine):
                writer.extend(read_hdf5(part))
        print(f"{name}.h5: {writer.n_frames} frames")


if __name__ == "__main__":
    main()

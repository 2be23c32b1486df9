"""Build datasets/nci-xtb (version 2): GFN2-xTB frames of NCI molecules that RDKit ships.

Run from the repository root:
    .venv/bin/python datasets/nci-xtb/recipe.py --workers 2 [--parts DIR] [--out DIR]

1. Molecules: ``rdkit/Data/NCI/first_5K.smi`` in file order, kept if they parse as one
   neutral closed-shell molecule (gdlphys.molecules.parse_smiles), contain only
   H C N O F S Cl, have 3-16 heavy atoms and at most 34 atoms with hydrogens;
   duplicates (same canonical SMILES) dropped. The kept list is shuffled with seed 0 and
   split **by molecule**. Version 1's split (the first 200 / 20 / 30 of that order) stays
   inside version 2's: train = v1 train + the next 1,800, valid = v1 valid + 80, test = v1
   test + 120. The split is written to ``split-v2.json``.
2. Frames (gdlphys.data.label_smiles), per molecule from one ETKDG conformer: Langevin MD at
   300 K and at 600 K (50 equilibration steps of 0.5 fs, then 3 frames 15 steps apart) and
   normal-mode sampling around the xTB minimum at 300 K and 600 K (the minimum once, then
   harmonic Boltzmann displacements; one Hessian serves both temperatures): 12 frames per
   molecule with energy, forces and dipole, each labelled by a fresh tblite calculator.
3. Output: train-v2.h5, valid-v2.h5, test-v2.h5 in ``--out`` (version 1's train.h5 stays: the
   potentials trained on it find it by its hash for replay). Resumable: per molecule (partial
   files under ``--parts``, default ``v2-parts/``, kept in the repository between sessions);
   training molecules go in chunks of 250, each merged when it is done, so a killed run loses
   at most the molecules in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
ELEMENTS = {"H", "C", "N", "O", "F", "S", "Cl"}
V1_SIZES = {"train": 200, "valid": 20, "test": 30}
V2_EXTRA = {"train": 1800, "valid": 80, "test": 120}
CHUNK = 250
LABEL = dict(
    sampling=["md", "normal-modes"], temperature=[300.0, 600.0], frames=3, stride=15, equilibration_steps=50, seed=2,
)


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
    need = sum(V1_SIZES.values()) + sum(V2_EXTRA.values())
    if len(smiles) < need:
        raise SystemExit(f"only {len(smiles)} molecules pass the filter, {need} needed")
    split, start = {name: [] for name in V1_SIZES}, 0
    for name, size in V1_SIZES.items():
        split[name] += smiles[start : start + size]
        start += size
    for name, size in V2_EXTRA.items():
        split[name] += smiles[start : start + size]
        start += size
    return split


def recover_chunk(merged: Path, smiles: list[str], chunk: Path, software: str) -> bool:
    """Write ``chunk`` from the frames of its molecules in an earlier merge, when that holds them all:
    the repository ships the merged files, not the chunks (a fresh clone resumes from them)."""
    from gdlphys.data.hdf5 import read_hdf5
    from gdlphys.data.hdf5_writer import write_hdf5

    if not merged.exists():
        return False
    wanted = set(smiles)
    frames = [frame for frame in read_hdf5(merged) if frame.info.get("smiles") in wanted]
    if {frame.info["smiles"] for frame in frames} != wanted:
        return False
    write_hdf5(chunk, frames, method="GFN2-xTB", software=software)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="labelling processes (one core each)")
    parser.add_argument("--parts", type=Path, default=HERE / "v2-parts", help="where per-chunk files and partials go")
    parser.add_argument("--out", type=Path, default=HERE, help="where train.h5, valid.h5, test.h5 go")
    parser.add_argument("--merge-only", action="store_true",
                        help="label nothing: merge the chunks finished so far (to train on a partial set)")
    args = parser.parse_args()

    from gdlphys.data.hdf5 import read_hdf5
    from gdlphys.data.hdf5_writer import FrameWriter
    from gdlphys.data.label import label_smiles, tblite_version

    split = split_molecules()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split-v2.json").write_text(json.dumps(split, indent=1) + "\n")
    print({name: len(smiles) for name, smiles in split.items()}, "molecules", flush=True)
    args.parts.mkdir(parents=True, exist_ok=True)
    software = f"tblite {tblite_version()}"
    for name in ("valid", "test", "train"):
        smiles = split[name]
        chunks = []
        for c in range(0, len(smiles), CHUNK):
            chunk = args.parts / f"{name}-{c // CHUNK:02d}.h5"
            chunks.append(chunk)
            if chunk.exists() or args.merge_only:
                continue
            if recover_chunk(args.out / f"{name}-v2.h5", smiles[c : c + CHUNK], chunk, software):
                print(f"{chunk.name}: recovered from {name}-v2.h5", flush=True)
                continue
            begin = time.perf_counter()
            result = label_smiles(smiles[c : c + CHUNK], chunk, workers=args.workers, progress=True, **LABEL)
            for failure in result.failures:
                print(f"  skipped {failure.smiles}: {failure.reason}", flush=True)
            seconds = time.perf_counter() - begin
            print(f"{chunk.name}: {result.n_frames} frames of {result.n_molecules} molecules in {seconds:.0f} s "
                  f"({result.n_frames / seconds:.2f} frames/s, {result.calls_per_frame or 0:.1f} xTB calls per frame)",
                  flush=True)
        with FrameWriter(args.out / f"{name}-v2.h5", method="GFN2-xTB", software=software,
                         attrs={"label_settings": json.dumps(LABEL, sort_keys=True), "dataset": "nci-xtb v2"}) as writer:
            for chunk in chunks:
                if chunk.exists():
                    writer.extend(read_hdf5(chunk))
        done = sum(chunk.exists() for chunk in chunks)
        print(f"{name}-v2.h5: {writer.n_frames} frames ({done} of {len(chunks)} chunks of {CHUNK} molecules)", flush=True)


if __name__ == "__main__":
    main()

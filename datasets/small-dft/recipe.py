"""Recipe of datasets/small-dft: small molecules, geometries from GFN2-xTB Langevin MD, labelled
with DFT (PBE/def2-SVP, PySCF, density fitting). See card.md.

    .venv/bin/pip install -e '.[dft]'                 # PySCF
    .venv/bin/python datasets/small-dft/recipe.py     # writes train.h5 and test.h5 here (resumes after a kill)
    .venv/bin/python datasets/small-dft/recipe.py --smiles O --frames 2 --output /tmp/x   # a quick try
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

HERE = Path(__file__).resolve().parent
SMILES = ["O", "CO", "CN", "C=O", "N", "CC", "CCO", "CC=O"]  # water, methanol, methylamine, formaldehyde, ...
FUNCTIONAL, BASIS = "PBE", "def2-SVP"


def dft_label(atoms: Atoms, functional: str = FUNCTIONAL, basis: str = BASIS, guess=None) -> tuple[Atoms, object]:
    """A copy of ``atoms`` with PySCF restricted Kohn-Sham energy (eV) and forces (-gradient, eV/Å),
    and the converged density matrix. ``guess``: the density of a nearby geometry of the same
    molecule (the previous MD frame): it only saves SCF cycles; the result is the same."""
    from pyscf import dft, gto

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
        basis=basis, unit="Angstrom", charge=0, spin=0, verbose=0,
    )
    mf = dft.RKS(mol).density_fit()
    mf.xc = functional
    mf.conv_tol = 1e-9
    energy = mf.kernel(dm0=guess)
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge for {atoms.get_chemical_formula()}")
    gradient = mf.nuc_grad_method().kernel()  # Hartree/Bohr
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    frame.calc = SinglePointCalculator(
        frame, energy=float(energy) * units.Hartree, forces=-np.asarray(gradient) * units.Hartree / units.Bohr
    )
    return frame, mf.make_rdm1()


def make_split(smiles: list[str], frames: int, seed: int, output: Path, stride: int = 20, equilibration_steps: int = 200) -> int:
    """xTB MD geometries (gdlphys.data.label_smiles) relabelled with DFT -> ``output`` (HDF5).

    Each molecule's DFT frames go to ``output.partial/<i>-<smiles>.h5`` as soon as they are done,
    so a killed run resumes from the last finished molecule; ``output`` is written at the end."""
    from pyscf import __version__ as pyscf_version
    from tqdm.auto import tqdm

    from gdlphys.data import read_hdf5, write_hdf5
    from gdlphys.data.label import label_smiles

    provenance = {"method": f"{FUNCTIONAL}/{BASIS}", "software": f"pyscf {pyscf_version}"}
    parts = output.with_name(output.name + ".partial")
    parts.mkdir(parents=True, exist_ok=True)
    labelled: list[Atoms] = []
    for index, smi in enumerate(smiles):
        part = parts / f"{index:02d}-{''.join(c if c.isalnum() else '_' for c in smi)}-seed{seed}-n{frames}.h5"
        if not part.exists():
            with tempfile.TemporaryDirectory() as tmp:
                xtb = label_smiles(
                    [smi], Path(tmp) / "xtb.h5", frames=frames, stride=stride, seed=seed,
                    equilibration_steps=equilibration_steps, progress=False,
                )
                if xtb.failures:
                    raise RuntimeError(f"xTB sampling failed: {xtb.failures}")
                geometries = read_hdf5(xtb.path)
            done, guess = [], None
            for atoms in tqdm(geometries, desc=f"{output.name}: {smi} (DFT)", unit="frame"):
                frame, guess = dft_label(atoms, guess=guess)
                frame.info["smiles"] = smi
                done.append(frame)
            write_hdf5(part, done, **provenance)  # atomic: a killed run leaves no half-written part
        labelled.extend(read_hdf5(part))
    write_hdf5(output, labelled, **provenance)
    return len(labelled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smiles", nargs="+", default=SMILES)
    parser.add_argument("--frames", type=int, default=25, help="training frames per molecule (test: a quarter)")
    parser.add_argument("--test-frames", type=int, default=None, help="test frames per molecule (default frames/4; 0: none)")
    parser.add_argument("--stride", type=int, default=20, help="MD steps (0.5 fs) between frames")
    parser.add_argument("--equilibration-steps", type=int, default=200)
    parser.add_argument("--output", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    md = {"stride": args.stride, "equilibration_steps": args.equilibration_steps}
    n_train = make_split(args.smiles, args.frames, seed=0, output=args.output / "train.h5", **md)
    n_test_frames = max(1, args.frames // 4) if args.test_frames is None else args.test_frames
    n_test = make_split(args.smiles, n_test_frames, seed=1, output=args.output / "test.h5", **md) if n_test_frames else 0
    print(f"wrote {n_train} training and {n_test} test frames to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (about 15 minutes on 2 cores).
# Run from the repository root: bash datasets/ethanol-xtb/recipe.sh
set -euo pipefail
here=datasets/ethanol-xtb
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
# Training frames: one 500 K Langevin trajectory (0.5 fs steps, a frame every 10 steps after 100 fs).
$gdlphys data label "CCO" -o $here/train.h5 --frames 1000 --temperature 500 --seed 0 --stride 10 --timestep 0.5
# Test frames: an independent trajectory (another seed), never seen in training.
$gdlphys data label "CCO" -o $here/test.h5 --frames 200 --temperature 500 --seed 1 --stride 10 --timestep 0.5
# Far outside the training temperature: for checking uncertainty estimates.
$gdlphys data label "CCO" -o $here/hot.h5 --frames 200 --temperature 1200 --seed 2 --stride 10 --timestep 0.5
# A GFN2-xTB-relaxed starting structure for MD.
${PYTHON:-.venv/bin/python} - <<'PY'
from ase.io import write
from ase.optimize import BFGS
from gdlphys.molecules import smiles_to_atoms
from gdlphys.data.label import tblite_calculator
atoms = smiles_to_atoms("CCO")[0]
atoms.calc = tblite_calculator("GFN2-xTB")
BFGS(atoms, logfile=None).run(fmax=0.005)
atoms.calc = None
atoms.info = {"smiles": "CCO", "comment": "GFN2-xTB (tblite) minimum, fmax 0.005 eV/A"}
write("datasets/ethanol-xtb/ethanol.xyz", atoms)
PY

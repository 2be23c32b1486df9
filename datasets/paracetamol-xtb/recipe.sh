#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (about 3 minutes on one core).
# Run from the repository root: OMP_NUM_THREADS=1 bash datasets/paracetamol-xtb/recipe.sh
set -euo pipefail
here=datasets/paracetamol-xtb
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
smiles="CC(=O)Nc1ccc(O)cc1"
# Training + validation frames: one 500 K Langevin trajectory (0.5 fs steps, a frame every 10 steps after 100 fs).
$gdlphys data label "$smiles" -o $here/trajectory-seed0.h5 --frames 1000 --temperature 500 --seed 0 --stride 10 --timestep 0.5
# Test frames: an independent trajectory (another seed), never seen in training or validation.
$gdlphys data label "$smiles" -o $here/test.h5 --frames 200 --temperature 500 --seed 1 --stride 10 --timestep 0.5
# Split the first trajectory: a seeded random 50 frames for validation, the other 950 for training.
${PYTHON:-.venv/bin/python} - <<'PY'
import h5py
import numpy as np
from gdlphys.data import read_hdf5, write_hdf5

here = "datasets/paracetamol-xtb"
source = f"{here}/trajectory-seed0.h5"
with h5py.File(source, "r") as f:
    attrs = {k: f.attrs[k] for k in ("label_settings",) if k in f.attrs}
    method, software = str(f.attrs["method"]), str(f.attrs["software"])
frames = read_hdf5(source)
valid = set(np.random.default_rng(0).permutation(len(frames))[:50].tolist())
for name, keep in (("train", lambda k: k not in valid), ("valid", lambda k: k in valid)):
    part = [a for k, a in enumerate(frames) if keep(k)]
    write_hdf5(f"{here}/{name}.h5", part, method=method, software=software,
               attrs={**attrs, "split": f"{name}: {len(part)} of the 1000 frames of trajectory seed 0 (numpy default_rng(0) permutation, first 50 = valid)"})
PY
rm -f $here/trajectory-seed0.h5

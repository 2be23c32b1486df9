#!/usr/bin/env bash
# One molecule's MD dataset, as the benchmark datasets are made: 1000 frames of a 500 K GFN2-xTB
# Langevin trajectory split 950 train / 50 valid, and 200 test frames of an independent one.
# Usage, from the repository root: bash datasets/md_dataset.sh DIR SMILES
set -euo pipefail
here=$1
smiles=$2
mkdir -p "$here"
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
# Training + validation frames: one 500 K Langevin trajectory (0.5 fs steps, a frame every 10 steps after 100 fs).
$gdlphys data label "$smiles" -o $here/trajectory-seed0.h5 --frames 1000 --temperature 500 --seed 0 --stride 10 --timestep 0.5
# Test frames: an independent trajectory (another seed), never seen in training or validation.
$gdlphys data label "$smiles" -o $here/test.h5 --frames 200 --temperature 500 --seed 1 --stride 10 --timestep 0.5
# Split the first trajectory: a seeded random 50 frames for validation, the other 950 for training.
${PYTHON:-.venv/bin/python} - "$here" <<'PY'
import sys

import h5py
import numpy as np
from gdlphys.data import read_hdf5, write_hdf5

here = sys.argv[1]
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

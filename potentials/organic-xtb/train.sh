#!/usr/bin/env bash
# Reproduces this potential and the figures of its card (run from the repository root).
# Data: bash-free rebuild with `.venv/bin/python datasets/nci-xtb/recipe.py` (about 40 min on 2 cores).
set -euo pipefail
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
run=${RUN:-runs/organic-xtb}
data=datasets/nci-xtb
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $gdlphys train --train $data/train.h5 --valid $data/valid.h5 \
    --config potentials/organic-xtb/config.yaml --max-time ${MAX_TIME:-45m} -o "$run"
cp "$run/potential.pt" "$run/learning_curve.png" potentials/organic-xtb/
$gdlphys eval organic-xtb $data/test.h5 --plot potentials/organic-xtb/parity.png
$gdlphys eval organic-xtb $data/test.h5 --json
# Held-out drug-like molecules against GFN2-xTB directly: forces, dipoles, geometries, frequencies.
.venv/bin/python potentials/organic-xtb/evaluate.py --potential organic-xtb

#!/usr/bin/env bash
# Reproduces organic-xtb 2 and the figures of its card (run from the repository root).
# Data: datasets/nci-xtb/train-v2.h5 and valid-v2.h5 (shipped; `.venv/bin/python datasets/nci-xtb/recipe.py`
# labels the rest of version 2). On a CPU gdlphys train runs one data-parallel process per idle core.
set -euo pipefail
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
run=${RUN:-runs/organic-xtb-2}
data=datasets/nci-xtb
$gdlphys train --train $data/train-v2.h5 --valid $data/valid-v2.h5 \
    --config potentials/organic-xtb/config.yaml --max-time ${MAX_TIME:-80m} -o "$run"
cp "$run/potential.pt" "$run/learning_curve.png" potentials/organic-xtb/
$gdlphys eval organic-xtb $data/test-v2.h5 --plot potentials/organic-xtb/parity.png --json
$gdlphys eval organic-xtb $data/test.h5 --json
# Held-out drug-like molecules against GFN2-xTB directly: forces, dipoles, geometries, frequencies.
.venv/bin/python potentials/organic-xtb/evaluate.py --potential organic-xtb

#!/usr/bin/env bash
# Reproduces this potential and the figures of its card (run from the repository root).
set -euo pipefail
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
run=${RUN:-runs/ethanol-xtb}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $gdlphys train --train datasets/ethanol-xtb/train.h5 \
    --config potentials/ethanol-xtb/config.yaml --max-time 25m -o "$run"
cp "$run/potential.pt" "$run/learning_curve.png" potentials/ethanol-xtb/
$gdlphys eval ethanol-xtb datasets/ethanol-xtb/test.h5 --plot potentials/ethanol-xtb/parity.png
$gdlphys eval ethanol-xtb datasets/ethanol-xtb/test.h5 --json
$gdlphys md ethanol-xtb datasets/ethanol-xtb/ethanol.xyz --steps 2000 --dt 0.5 --temperature 300 --json
$gdlphys md ethanol-xtb datasets/ethanol-xtb/ethanol.xyz --steps 20000 --dt 0.5 --temperature 300 --json

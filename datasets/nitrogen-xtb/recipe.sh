#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (a few minutes on one core).
# Run from the repository root: bash datasets/nitrogen-xtb/recipe.sh
# New chemistry for fine-tuning ethanol-xtb (H, C, O): every molecule contains nitrogen.
set -euo pipefail
here=datasets/nitrogen-xtb
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
# methylamine, ethylamine, dimethylamine, 2-aminoethanol, acetamide
seen=("CN" "CCN" "CNC" "NCCO" "CC(N)=O")
# 500 K Langevin MD, 0.5 fs steps, 100 fs equilibration, a frame every 20 steps (10 fs).
md="--temperature 500 --stride 20 --timestep 0.5 --quiet"
# Training pool: 40 frames per molecule (200); benchmarks draw 50 / 100 / 200 from it.
$gdlphys data label "${seen[@]}" -o $here/train.h5 --frames 40 --seed 0 $md
# Validation: independent trajectories (another seed), 8 frames per molecule.
$gdlphys data label "${seen[@]}" -o $here/valid.h5 --frames 8 --seed 2 $md
# Test: independent trajectories (another seed), 20 frames per molecule.
$gdlphys data label "${seen[@]}" -o $here/test.h5 --frames 20 --seed 1 $md
# Molecules never in training: acetonitrile (C#N) and N-methylformamide, 20 frames each.
$gdlphys data label "CC#N" "CNC=O" -o $here/unseen.h5 --frames 20 --seed 1 $md

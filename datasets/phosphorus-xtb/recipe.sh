#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (about 5 minutes on one core).
# Run from the repository root: bash datasets/phosphorus-xtb/recipe.sh
# New chemistry for fine-tuning organic-xtb (H C N O F S Cl): every molecule contains phosphorus.
set -euo pipefail
here=datasets/phosphorus-xtb
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
# trimethylphosphine, trimethylphosphine oxide, trimethyl phosphate, methylphosphonic acid, phenylphosphine
seen=("CP(C)C" "CP(C)(C)=O" "COP(=O)(OC)OC" "CP(=O)(O)O" "Pc1ccccc1")
# 500 K Langevin MD, 0.5 fs steps, 100 fs equilibration, a frame every 20 steps (10 fs).
md="--temperature 500 --stride 20 --timestep 0.5 --quiet"
# Training pool: 40 frames per molecule (200); benchmarks draw 50 / 100 / 200 from it.
$gdlphys data label "${seen[@]}" -o $here/train.h5 --frames 40 --seed 0 $md
# Validation: independent trajectories (another seed), 8 frames per molecule.
$gdlphys data label "${seen[@]}" -o $here/valid.h5 --frames 8 --seed 2 $md
# Test: independent trajectories (another seed), 20 frames per molecule.
$gdlphys data label "${seen[@]}" -o $here/test.h5 --frames 20 --seed 1 $md
# Molecules never in training: dimethyl methylphosphonate, triethyl phosphate,
# trimethylphosphine sulfide, O-phosphoethanolamine; 15 frames each.
$gdlphys data label "COP(C)(=O)OC" "CCOP(=O)(OCC)OCC" "CP(C)(C)=S" "NCCOP(=O)(O)O" -o $here/unseen.h5 --frames 15 --seed 1 $md

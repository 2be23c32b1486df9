#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (about 6 minutes on one core).
# Run from the repository root: bash datasets/bromine-xtb/recipe.sh
# New chemistry for fine-tuning organic-xtb (H C N O F S Cl): every molecule contains bromine.
set -euo pipefail
here=datasets/bromine-xtb
gdlphys=${GDLPHYS:-.venv/bin/gdlphys}
# bromobenzene, bromoethane, bromoacetone, 4-bromophenol, 2-bromopropanoic acid
seen=("Brc1ccccc1" "CCBr" "CC(=O)CBr" "Oc1ccc(Br)cc1" "CC(Br)C(=O)O")
# 500 K Langevin MD, 0.5 fs steps, 100 fs equilibration, a frame every 20 steps (10 fs).
md="--temperature 500 --stride 20 --timestep 0.5 --quiet"
# Training pool: 40 frames per molecule (200); benchmarks draw 50 / 200 from it.
$gdlphys data label "${seen[@]}" -o $here/train.h5 --frames 40 --seed 0 $md
# Validation: independent trajectories (another seed), 8 frames per molecule.
$gdlphys data label "${seen[@]}" -o $here/valid.h5 --frames 8 --seed 2 $md
# Test: independent trajectories (another seed), 20 frames per molecule.
$gdlphys data label "${seen[@]}" -o $here/test.h5 --frames 20 --seed 1 $md
# Molecules never in training: 2-bromopyridine, 1,2-dibromoethane, 4-bromoaniline,
# 3-bromothiophene; 15 frames each.
$gdlphys data label "Brc1ccccn1" "BrCCBr" "Nc1ccc(Br)cc1" "Brc1ccsc1" -o $here/unseen.h5 --frames 15 --seed 1 $md

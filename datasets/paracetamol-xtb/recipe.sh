#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (about 3 minutes on one core).
# Run from the repository root: OMP_NUM_THREADS=1 bash datasets/paracetamol-xtb/recipe.sh
set -euo pipefail
bash datasets/md_dataset.sh datasets/paracetamol-xtb "CC(=O)Nc1ccc(O)cc1"

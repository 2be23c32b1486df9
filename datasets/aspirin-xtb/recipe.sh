#!/usr/bin/env bash
# Rebuilds this dataset from nothing but RDKit and tblite (about 5 minutes on one core).
# Run from the repository root: OMP_NUM_THREADS=1 bash datasets/aspirin-xtb/recipe.sh
set -euo pipefail
bash datasets/md_dataset.sh datasets/aspirin-xtb "CC(=O)Oc1ccccc1C(=O)O"

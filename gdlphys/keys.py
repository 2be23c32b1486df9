"""Names and shapes of the fields of the one graph dict.

Every layer, the data pipeline and the calculator read and write a plain
``dict[str, torch.Tensor]`` whose keys are the constants below. Shapes use
``n_atoms`` (all atoms of a batch), ``n_edges`` and ``n_graphs`` (structures
in the batch). Units are ASE's: eV, Å, e, eV/Å^3.
"""

from __future__ import annotations

# --- structure (inputs) ----------------------------------------------------
POSITIONS = "positions"  # [n_atoms, 3] float, Å
ATOMIC_NUMBERS = "atomic_numbers"  # [n_atoms] int64, Z
CELL = "cell"  # [n_graphs, 3, 3] float, Å, rows are lattice vectors (zeros if non-periodic)
PBC = "pbc"  # [n_graphs, 3] bool
BATCH = "batch"  # [n_atoms] int64, index of the graph each atom belongs to
PTR = "ptr"  # [n_graphs + 1] int64, atoms of graph g are ptr[g]:ptr[g+1]
NUM_ATOMS = "num_atoms"  # [n_graphs] int64

# --- neighbour list ----------------------------------------------------------
# edge e carries a message from source j = EDGE_INDEX[0, e] to centre i = EDGE_INDEX[1, e];
# its vector is r_j - r_i + EDGE_SHIFTS[e] @ cell[batch[i]] (points from i to j).
EDGE_INDEX = "edge_index"  # [2, n_edges] int64
EDGE_SHIFTS = "edge_shifts"  # [n_edges, 3] float, integer-valued lattice translations
EDGE_VECTORS = "edge_vectors"  # [n_edges, 3] float, Å
EDGE_LENGTHS = "edge_lengths"  # [n_edges] float, Å
EDGE_SH = "edge_sh"  # [n_edges, irreps_sh.dim] spherical harmonics of the unit edge vector
EDGE_RADIAL = "edge_radial"  # [n_edges, n_basis] radial basis times smooth cutoff envelope

# --- per-atom features -------------------------------------------------------
SPECIES = "species"  # [n_atoms] int64, index of the atom's element in the model's species list
NODE_ATTRS = "node_attrs"  # [n_atoms, n_species] one-hot species (irreps n_species x 0e)
NODE_FEATURES = "node_features"  # [n_atoms, irreps.dim] equivariant features

# --- outputs / labels ----------------------------------------------------------
ATOMIC_ENERGIES = "atomic_energies"  # [n_atoms] float, eV
ENERGY = "energy"  # [n_graphs] float, eV
FORCES = "forces"  # [n_atoms, 3] float, eV/Å
STRESS = "stress"  # [n_graphs, 3, 3] float, eV/Å^3 (ASE sign convention)
VIRIAL = "virial"  # [n_graphs, 3, 3] float, eV
DIPOLE = "dipole"  # [n_graphs, 3] float, e*Å
ATOMIC_CHARGES = "atomic_charges"  # [n_atoms] float, e

# --- training only: how much each graph counts in the loss -------------------------
REPLAY = "replay"  # [n_graphs] bool, the frame was drawn from a fine-tuning replay pool
LOSS_WEIGHT = "loss_weight"  # [n_graphs] float, weight of every loss term of the graph (absent: 1)
# [n_graphs] float, extra weight of one term of the graph (absent: 1; 0: that label is not trained, or missing)
ENERGY_LOSS_WEIGHT = "energy_loss_weight"
FORCES_LOSS_WEIGHT = "forces_loss_weight"
STRESS_LOSS_WEIGHT = "stress_loss_weight"
DIPOLE_LOSS_WEIGHT = "dipole_loss_weight"

# Labels a frame may or may not carry (structures in one batch may differ in which they have).
LABELS = (ENERGY, FORCES, STRESS, DIPOLE)

# Fields that hold one value per atom, per edge and per graph (used by batching).
PER_ATOM = (POSITIONS, ATOMIC_NUMBERS, BATCH, SPECIES, NODE_ATTRS, NODE_FEATURES, ATOMIC_ENERGIES, FORCES, ATOMIC_CHARGES)
PER_EDGE = (EDGE_SHIFTS, EDGE_VECTORS, EDGE_LENGTHS, EDGE_SH, EDGE_RADIAL)
PER_GRAPH = (CELL, PBC, NUM_ATOMS, ENERGY, STRESS, VIRIAL, DIPOLE, REPLAY, LOSS_WEIGHT,
             ENERGY_LOSS_WEIGHT, FORCES_LOSS_WEIGHT, STRESS_LOSS_WEIGHT, DIPOLE_LOSS_WEIGHT)

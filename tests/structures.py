"""Small structures and models shared by the tests (built in code: nothing to download)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from gdlphys.graph import structure_graph
from gdlphys.graph import collate
from gdlphys.models.config import ModelConfig
from gdlphys.models.potential import Potential

SPECIES = [1, 6, 7, 8]


def random_molecule(n_atoms: int = 8, seed: int = 0, species=SPECIES) -> Atoms:
    """Atoms at least 0.9 Å apart in a ~3 Å blob, so every atom has neighbours."""
    rng = np.random.default_rng(seed)
    positions: list[np.ndarray] = []
    while len(positions) < n_atoms:
        candidate = rng.normal(scale=1.4, size=3)
        if all(np.linalg.norm(candidate - p) > 0.9 for p in positions):
            positions.append(candidate)
    return Atoms(numbers=rng.choice(species, size=n_atoms), positions=np.array(positions))


def random_crystal(n_atoms: int = 4, seed: int = 0, species=SPECIES, length: float = 3.2) -> Atoms:
    """A small triclinic periodic cell (smaller than twice the cutoff: atoms see their own images)."""
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * length + rng.uniform(-0.4, 0.4, size=(3, 3))
    while True:
        frac = rng.uniform(size=(n_atoms, 3))
        atoms = Atoms(numbers=rng.choice(species, size=n_atoms), scaled_positions=frac, cell=cell, pbc=True)
        if n_atoms < 2 or np.min(atoms.get_all_distances(mic=True)[np.triu_indices(n_atoms, 1)]) > 0.9:
            return atoms


def graph_of(atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    return structure_graph(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, cutoff=cutoff, dtype=dtype)


def batch_of(structures: list[Atoms], cutoff: float, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    return collate([graph_of(a, cutoff, dtype) for a in structures])


def tiny_config(**overrides) -> ModelConfig:
    values = dict(cutoff=3.5, num_features=8, l_max=2, num_layers=2, num_basis=6, radial_hidden=16, readout_hidden=8)
    values.update(overrides)
    return ModelConfig(**values)


def tiny_potential(dtype: torch.dtype = torch.float64, seed: int = 0, **overrides) -> Potential:
    """Random weights, with non-trivial per-species scales."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        potential = Potential(tiny_config(**overrides), SPECIES, [-13.6, -1030.0, -1485.0, -2040.0], 12.0, scale=0.7)
        with torch.no_grad():
            potential.model[-1].scale.mul_(1 + 0.3 * torch.randn(len(SPECIES)))
    return potential.to(dtype).eval()

"""Statistics of the training set that fix a potential's normalisation before training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from gdlphys import keys
from gdlphys.models.composition import element_counts, fit_composition


@dataclass
class DatasetStatistics:
    species: list[int]  # atomic numbers, sorted
    reference_energies: list[float]  # eV per atom of each species, least-squares fit
    avg_num_neighbors: float
    force_rms: float  # eV/Å, the model's initial energy scale
    residual_energy_rms_per_atom: float  # eV/atom left after the reference energies

    def summary(self) -> str:
        from ase.data import chemical_symbols

        refs = ", ".join(f"{chemical_symbols[z]}: {e:.4f}" for z, e in zip(self.species, self.reference_energies))
        return (
            f"species {[chemical_symbols[z] for z in self.species]}; reference energies (eV) {refs}; "
            f"avg. neighbours {self.avg_num_neighbors:.2f}; force RMS {self.force_rms:.3f} eV/Å; "
            f"residual energy RMS {1000 * self.residual_energy_rms_per_atom:.2f} meV/atom"
        )


def fit_reference_energies(
    numbers_per_frame: Sequence[np.ndarray], energies: np.ndarray, species: Sequence[int]
) -> tuple[np.ndarray, float]:
    """Least-squares E0[Z] with E_frame ~ sum_atoms E0[Z]; returns (E0, residual RMS per atom)."""
    fit = fit_composition(element_counts(numbers_per_frame, species), energies)
    return fit.values, fit.residual_rms_per_atom_after


def compute_statistics(graphs: Iterable[dict[str, torch.Tensor]], species: Sequence[int] | None = None) -> DatasetStatistics:
    """One pass over training graphs (with neighbour lists and labels)."""
    numbers_per_frame, energies, force_sq, n_force, n_edges, n_atoms = [], [], 0.0, 0, 0, 0
    for graph in graphs:
        numbers = graph[keys.ATOMIC_NUMBERS].numpy()
        numbers_per_frame.append(numbers)
        n_atoms += len(numbers)
        n_edges += graph[keys.EDGE_INDEX].shape[1]
        if keys.ENERGY in graph:
            energies.append(float(graph[keys.ENERGY].reshape(-1)[0]))
        if keys.FORCES in graph:
            force_sq += float((graph[keys.FORCES].double() ** 2).sum())
            n_force += graph[keys.FORCES].numel()
    if not numbers_per_frame:
        raise ValueError("the training set is empty")
    if len(energies) != len(numbers_per_frame):
        raise ValueError("every training frame needs an energy label")
    present = sorted({int(z) for numbers in numbers_per_frame for z in np.unique(numbers)})
    species = sorted(species) if species is not None else present
    missing = set(present) - set(species)
    if missing:
        raise ValueError(f"training data holds elements {sorted(missing)} outside the requested species {species}")
    reference, residual_rms = fit_reference_energies(numbers_per_frame, np.asarray(energies), species)
    force_rms = float(np.sqrt(force_sq / n_force)) if n_force else 1.0
    return DatasetStatistics(
        species=list(species),
        reference_energies=[float(e) for e in reference],
        avg_num_neighbors=max(n_edges / n_atoms, 1.0),
        force_rms=force_rms if force_rms > 1e-6 else 1.0,
        residual_energy_rms_per_atom=residual_rms,
    )

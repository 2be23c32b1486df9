"""The one composition least squares: per-species energies from per-structure totals.

``E_structure ~ sum over its atoms of e[Z]`` is linear in the element counts; fitting ``e`` is
how reference energies E0 are found before training (:mod:`gdlphys.train.statistics`) and
refitted for new elements or a new level of theory (:mod:`gdlphys.models.surgery`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CompositionFit", "element_counts", "fit_composition"]


def element_counts(numbers_per_frame: Sequence[np.ndarray], species: Sequence[int]) -> np.ndarray:
    """[n_frames, n_species] how many atoms of each species every frame holds."""
    index = {int(z): k for k, z in enumerate(species)}
    counts = np.zeros((len(numbers_per_frame), len(species)))
    for row, numbers in enumerate(numbers_per_frame):
        for z, c in zip(*np.unique(np.asarray(numbers), return_counts=True)):
            counts[row, index[int(z)]] = c
    return counts


@dataclass
class CompositionFit:
    """Per-species values and the per-atom RMS of the targets before and after subtracting them."""

    values: np.ndarray  # [n_species]
    residual_rms_per_atom_before: float
    residual_rms_per_atom_after: float


def fit_composition(
    counts: np.ndarray, target: np.ndarray, damped: Sequence[int] = (), damping: float = 0.0
) -> CompositionFit:
    """Least squares ``counts @ values ~ target`` (float64).

    ``damped`` columns get a ridge term ``damping`` (relative to the mean squared count of a
    column): where the data cannot tell species apart (few compositions), the change goes to the
    undamped ones; with enough compositions it moves the fit by ~``damping``. Without it, an
    underdetermined fit spreads the values by least norm.
    """
    counts, target = np.asarray(counts, dtype=np.float64), np.asarray(target, dtype=np.float64)
    matrix, rhs = counts, target
    if len(damped) and damping > 0:
        scale = np.sqrt(damping * float((counts**2).sum()) / counts.shape[1])
        ridge = np.zeros((len(damped), counts.shape[1]))
        ridge[np.arange(len(damped)), list(damped)] = scale
        matrix, rhs = np.vstack([counts, ridge]), np.concatenate([target, np.zeros(len(damped))])
    values, *_ = np.linalg.lstsq(matrix, rhs, rcond=None)
    n_atoms = counts.sum(axis=1)
    after = (target - counts @ values) / n_atoms
    return CompositionFit(
        values,
        float(np.sqrt(np.mean((target / n_atoms) ** 2))),
        float(np.sqrt(np.mean(after**2))),
    )

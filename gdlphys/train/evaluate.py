"""Errors of a potential on a labelled HDF5 file (energy, force and dipole MAE / RMSE)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gdlphys import keys
from gdlphys.data.datamodule import GraphDataset
from gdlphys.graph import collate
from gdlphys.models.potential import Potential
from gdlphys.train.metrics import ErrorMetrics


@dataclass
class Evaluation:
    metrics: dict[str, float]
    energy: tuple[np.ndarray, np.ndarray]  # (reference, predicted) per atom above the summed E0, eV/atom
    forces: tuple[np.ndarray, np.ndarray] | None  # (reference, predicted) components, eV/Å
    dipole: tuple[np.ndarray, np.ndarray] | None = None  # (reference, predicted) [n_frames, 3], e*Å


def evaluate_potential(
    potential: Potential,
    path: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Evaluation:
    """Predict every frame of ``path``; metrics (:class:`~gdlphys.train.metrics.ErrorMetrics`) in eV
    (total energy), eV/atom, eV/Å, e*Å and Debye (|dipole|), and the values for parity plots."""
    dtype = dtype or potential.dtype
    potential = potential.to(device=device, dtype=dtype).eval()
    loader = DataLoader(GraphDataset(path, potential.cutoff, dtype, cache=False), batch_size=batch_size, collate_fn=collate)
    metrics = ErrorMetrics().to(device)
    kept: dict[str, list[np.ndarray]] = {name: [] for name in ("ref_e", "pred_e", "base", "n_atoms", "ref_f", "pred_f", "ref_d", "pred_d")}

    def keep(name: str, value: torch.Tensor) -> None:
        kept[name].append(value.detach().double().cpu().numpy())

    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        if keys.ENERGY not in batch:
            raise ValueError(f"{path} has no energy labels to evaluate against")
        out = potential(batch, compute_forces=keys.FORCES in batch)
        metrics.update(out, batch)
        keep("ref_e", batch[keys.ENERGY])
        keep("pred_e", out[keys.ENERGY])
        keep("base", potential.summed_reference_energies(batch))
        keep("n_atoms", batch[keys.NUM_ATOMS])
        if keys.FORCES in batch:
            keep("ref_f", batch[keys.FORCES])
            keep("pred_f", out[keys.FORCES])
        if keys.DIPOLE in batch and keys.DIPOLE in out:
            keep("ref_d", batch[keys.DIPOLE])
            keep("pred_d", out[keys.DIPOLE])
    joined = {name: np.concatenate(values) if values else None for name, values in kept.items()}
    ref_e, pred_e, base, n_atoms = joined["ref_e"], joined["pred_e"], joined["base"], joined["n_atoms"]
    forces = (joined["ref_f"], joined["pred_f"]) if joined["ref_f"] is not None else None
    dipole = (joined["ref_d"], joined["pred_d"]) if joined["ref_d"] is not None else None
    # plotted above the summed reference energies: with many molecules, E/atom alone mostly shows composition
    return Evaluation(metrics.as_floats(), ((ref_e - base) / n_atoms, (pred_e - base) / n_atoms), forces, dipole)

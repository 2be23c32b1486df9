"""Errors of a potential on a labelled HDF5 file (energy, force and dipole MAE / RMSE)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gdlphys import keys
from gdlphys.data.datamodule import GraphDataset
from gdlphys.graph import collate
from gdlphys.models.potential import Potential
from gdlphys.units import DEBYE_PER_E_ANGSTROM


@dataclass
class Evaluation:
    metrics: dict[str, float]
    energy: tuple[np.ndarray, np.ndarray]  # (reference, predicted) per atom above the summed E0, eV/atom
    forces: tuple[np.ndarray, np.ndarray] | None  # (reference, predicted) components, eV/Å
    dipole: tuple[np.ndarray, np.ndarray] | None = None  # (reference, predicted) [n_frames, 3], e*Å


def _errors(prefix: str, ref: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    diff = pred - ref
    return {f"{prefix}_mae": float(np.mean(np.abs(diff))), f"{prefix}_rmse": math.sqrt(float(np.mean(diff**2)))}


def evaluate_potential(
    potential: Potential,
    path: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Evaluation:
    """Predict every frame of ``path``; metrics in eV (total energy), eV/atom and eV/Å."""
    dtype = dtype or potential.dtype
    potential = potential.to(device=device, dtype=dtype).eval()
    loader = DataLoader(GraphDataset(path, potential.cutoff, dtype, cache=False), batch_size=batch_size, collate_fn=collate)
    ref_e, pred_e, n_atoms, ref_f, pred_f, ref_d, pred_d, base = [], [], [], [], [], [], [], []
    reference_energies = potential.reference_energies.double()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        if keys.ENERGY not in batch:
            raise ValueError(f"{path} has no energy labels to evaluate against")
        out = potential(batch, compute_forces=keys.FORCES in batch)
        ref_e.append(batch[keys.ENERGY].double().cpu().numpy())
        pred_e.append(out[keys.ENERGY].detach().double().cpu().numpy())
        atom_e0 = reference_energies[potential.species_index(batch[keys.ATOMIC_NUMBERS])]
        base.append(torch.zeros(len(batch[keys.NUM_ATOMS]), dtype=torch.float64, device=device).index_add(0, batch[keys.BATCH], atom_e0).cpu().numpy())
        n_atoms.append(batch[keys.NUM_ATOMS].cpu().numpy())
        if keys.FORCES in batch:
            ref_f.append(batch[keys.FORCES].double().cpu().numpy())
            pred_f.append(out[keys.FORCES].detach().double().cpu().numpy())
        if keys.DIPOLE in batch and keys.DIPOLE in out:
            ref_d.append(batch[keys.DIPOLE].double().cpu().numpy())
            pred_d.append(out[keys.DIPOLE].detach().double().cpu().numpy())
    ref_e, pred_e, n_atoms, base = np.concatenate(ref_e), np.concatenate(pred_e), np.concatenate(n_atoms), np.concatenate(base)
    metrics = _errors("energy", ref_e, pred_e)
    metrics.update(_errors("energy_per_atom", ref_e / n_atoms, pred_e / n_atoms))
    forces = None
    if ref_f:
        forces = (np.concatenate(ref_f), np.concatenate(pred_f))
        metrics.update(_errors("forces", *forces))
    dipole = None
    if ref_d:
        dipole = (np.concatenate(ref_d), np.concatenate(pred_d))
        metrics.update(_errors("dipole", *dipole))  # per component, e*Å
        norms = [np.linalg.norm(d, axis=1) * DEBYE_PER_E_ANGSTROM for d in dipole]
        metrics.update(_errors("dipole_debye_norm", *norms))  # |mu|, Debye
    metrics["n_frames"] = int(len(ref_e))
    # plotted above the summed reference energies: with many molecules, E/atom alone mostly shows composition
    return Evaluation(metrics, ((ref_e - base) / n_atoms, (pred_e - base) / n_atoms), forces, dipole)

"""Errors of a potential on a labelled HDF5 file (energy, force and dipole MAE / RMSE), in batches,
on one process or sharded over several (results in file order either way)."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from gdlphys import keys
from gdlphys.data.datamodule import GraphDataset
from gdlphys.graph import collate
from gdlphys.models.potential import Potential
from gdlphys.train.metrics import ErrorMetrics

_KEPT = ("ref_e", "pred_e", "base", "n_atoms", "ref_f", "pred_f", "ref_d", "pred_d")


@dataclass
class Evaluation:
    metrics: dict[str, float]
    energy: tuple[np.ndarray, np.ndarray]  # (reference, predicted) per atom above the summed E0, eV/atom
    forces: tuple[np.ndarray, np.ndarray] | None  # (reference, predicted) components, eV/Å
    dipole: tuple[np.ndarray, np.ndarray] | None = None  # (reference, predicted) [n_frames, 3], e*Å


def _evaluate_shard(potential: Potential, path: str | Path, indices: list[int] | None, batch_size: int,
                    device: str | torch.device, dtype: torch.dtype, progress: bool = False):
    """ErrorMetrics' state and the kept values (one array per frame and field) of frames ``indices``."""
    potential = potential.to(device=device, dtype=dtype).eval()
    dataset = GraphDataset(path, potential.cutoff, dtype, cache=False)
    if indices is not None:
        dataset = Subset(dataset, indices)
    metrics = ErrorMetrics().to(device)
    kept: dict[str, list[np.ndarray]] = {name: [] for name in _KEPT}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(dataset), unit="frame", desc="eval", disable=not progress, file=sys.stderr)
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        batch = {k: v.to(device) for k, v in batch.items()}
        if keys.ENERGY not in batch:
            raise ValueError(f"{path} has no energy labels to evaluate against")
        out = potential(batch, compute_forces=keys.FORCES in batch)
        metrics.update(out, batch)
        ptr = batch[keys.PTR].tolist()

        def keep(name: str, value: torch.Tensor, per_atom: bool = False) -> None:
            value = value.detach().double().cpu().numpy()
            kept[name].extend(value[a:b] for a, b in zip(ptr[:-1], ptr[1:])) if per_atom else kept[name].extend(value)

        keep("ref_e", batch[keys.ENERGY])
        keep("pred_e", out[keys.ENERGY])
        keep("base", potential.summed_reference_energies(batch))
        keep("n_atoms", batch[keys.NUM_ATOMS])
        if keys.FORCES in batch:
            keep("ref_f", batch[keys.FORCES], per_atom=True)
            keep("pred_f", out[keys.FORCES], per_atom=True)
        if keys.DIPOLE in batch and keys.DIPOLE in out:
            keep("ref_d", batch[keys.DIPOLE])
            keep("pred_d", out[keys.DIPOLE])
        bar.update(len(ptr) - 1)
    bar.close()
    return {k: v.cpu() for k, v in metrics.metric_state.items()}, kept


def _one_thread_shard(args):
    torch.set_num_threads(1)  # the shards share the cores
    return _evaluate_shard(*args)


def evaluate_potential(
    potential: Potential,
    path: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    processes: int = 1,
    progress: bool = False,
) -> Evaluation:
    """Predict every frame of ``path``, ``batch_size`` frames per forward pass; metrics
    (:class:`~gdlphys.train.metrics.ErrorMetrics`) in eV (total energy), eV/atom, eV/Å, e*Å and
    Debye (|dipole|), and the values for parity plots, in file order. ``processes`` > 1 shards
    the frames over that many CPU processes of one thread each (every ``processes``-th frame)."""
    dtype = dtype or potential.dtype
    if processes > 1:
        from gdlphys.data import FrameReader

        with FrameReader(path) as reader:
            n = len(reader)
        jobs = [(potential.cpu(), path, list(range(r, n, processes)), batch_size, "cpu", dtype) for r in range(processes)]
        with ProcessPoolExecutor(processes, mp_context=get_context("fork")) as pool:
            shards = list(pool.map(_one_thread_shard, jobs))
        metrics = ErrorMetrics()
        for state, _ in shards:
            metrics.add_states(state)
        order = np.argsort(np.concatenate([job[2] for job in jobs]), kind="stable")
        kept = {name: [item for _, shard in shards for item in shard[name]] for name in _KEPT}
        kept = {name: [values[i] for i in order] if values else [] for name, values in kept.items()}
    else:
        state, kept = _evaluate_shard(potential, path, None, batch_size, device, dtype, progress)
        metrics = ErrorMetrics()
        metrics.add_states(state)
    joined = {name: (np.concatenate(values) if np.ndim(values[0]) > 0 else np.asarray(values)) if values else None
              for name, values in kept.items() if name not in ("ref_d", "pred_d")}  # dipoles: stacked below
    ref_e, pred_e, base, n_atoms = joined["ref_e"], joined["pred_e"], joined["base"], joined["n_atoms"]
    forces = (joined["ref_f"], joined["pred_f"]) if joined["ref_f"] is not None else None
    dipole = (np.stack(kept["ref_d"]), np.stack(kept["pred_d"])) if kept["ref_d"] else None
    # plotted above the summed reference energies: with many molecules, E/atom alone mostly shows composition
    return Evaluation(metrics.as_floats(), ((ref_e - base) / n_atoms, (pred_e - base) / n_atoms), forces, dipole)

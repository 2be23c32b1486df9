"""Many structures per forward pass: energies and forces, relaxations, Hessians.

One block-diagonal graph holds several structures, so the per-call overhead (Python, graph
assembly, kernel launches) is paid once for all of them: the path that makes a GPU pay, and a
gain on a CPU for small molecules. Every function returns its results in input order and gives
what the one-structure path (``GDLCalculator``, ASE's BFGS, ``hessian_autograd``) gives, to
rounding.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS

from gdlphys import keys
from gdlphys.calculator import GDLCalculator
from gdlphys.graph import collate

__all__ = ["evaluate_many", "hessians_many", "relax_many"]


def _batched(calc: GDLCalculator, structures: Sequence[Atoms], create_graph: bool = False, batch: dict | None = None):
    """The committee-mean outputs of ``calc``'s potentials on one batch of ``structures`` (or on ``batch``, built already)."""
    batch = batch if batch is not None else collate([calc.graph(atoms) for atoms in structures])
    outs = [p(batch, compute_forces=True, create_graph=create_graph) for p in calc.potentials]
    mean = {k: sum(o[k] for o in outs) / len(outs) for k in (keys.ENERGY, keys.FORCES, keys.DIPOLE) if k in outs[0]}
    return batch, mean


def evaluate_many(
    structures: Sequence[Atoms], calc: GDLCalculator, batch_size: int = 32, progress: bool = False
) -> list[dict[str, np.ndarray | float]]:
    """``energy`` (eV), ``forces`` (eV/Å) and, with a dipole head, ``dipole`` (e*Å) of every
    structure, ``batch_size`` structures per forward pass; the committee mean for a committee."""
    from tqdm.auto import tqdm

    results: list[dict] = []
    bar = tqdm(total=len(structures), unit="structure", disable=not progress, file=sys.stderr)
    for start in range(0, len(structures), batch_size):
        chunk = structures[start : start + batch_size]
        batch, mean = _batched(calc, chunk)
        ptr = batch[keys.PTR].tolist()
        energy = mean[keys.ENERGY].detach().double().cpu().numpy()
        forces = mean[keys.FORCES].detach().double().cpu().numpy()
        dipole = mean[keys.DIPOLE].detach().double().cpu().numpy() if keys.DIPOLE in mean else None
        for g in range(len(chunk)):
            result = {"energy": float(energy[g]), "forces": forces[ptr[g] : ptr[g + 1]]}
            if dipole is not None:
                result["dipole"] = dipole[g]
            if calc.dispersion is not None:  # added per structure, as the calculator adds it
                atoms = chunk[g]
                result["energy"] += float(calc.dispersion.get_property("energy", atoms))
                result["forces"] = result["forces"] + calc.dispersion.get_property("forces", atoms)
            if not (np.isfinite(result["energy"]) and np.all(np.isfinite(result["forces"]))):
                raise FloatingPointError(f"structure {start + g}: the potential gave a non-finite energy or forces")
            results.append(result)
        bar.update(len(chunk))
    bar.close()
    return results


def _hold(atoms: Atoms, energy: float, forces: np.ndarray) -> None:
    """Give ``atoms`` the results computed for it in the batch, so its optimizer reads them as
    from any calculator (and errs if asked about other positions)."""
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)


def relax_many(
    structures: Sequence[Atoms], calc: GDLCalculator, fmax: float = 0.005, steps: int = 1000, batch_size: int = 32,
) -> list[tuple[Atoms, float, bool]]:
    """ASE's BFGS on every structure, the forces of all unconverged ones in one forward pass per
    step: each converges (max atomic force below ``fmax``) on its own and leaves the batch. The
    steps are BFGS's own, so each trajectory is the one ``BFGS(atoms).run(fmax, steps)`` takes.
    Returns (relaxed copy, energy, converged) per structure."""
    work = [atoms.copy() for atoms in structures]
    optimizers = [BFGS(atoms, logfile=None) for atoms in work]
    for optimizer in optimizers:
        optimizer.fmax = fmax  # what run(fmax=...) would set
    energies = [float("nan")] * len(work)
    done = [False] * len(work)
    converged = [False] * len(work)
    active = list(range(len(work)))
    while active:
        for start in range(0, len(active), batch_size):
            chunk = active[start : start + batch_size]
            values = evaluate_many([work[i] for i in chunk], calc, batch_size=len(chunk))
            for i, value in zip(chunk, values):
                energies[i] = value["energy"]
                _hold(work[i], value["energy"], value["forces"])
                if optimizers[i].converged():
                    done[i] = converged[i] = True
                elif optimizers[i].nsteps >= steps:
                    done[i] = True
                else:
                    optimizers[i].step()
                    optimizers[i].nsteps += 1
        active = [i for i in active if not done[i]]
    for atoms in work:
        atoms.calc = None  # the held results are of the last evaluation only; hand back plain structures
    return [(atoms, energy, ok) for atoms, energy, ok in zip(work, energies, converged)]


def hessians_many(structures: Sequence[Atoms], calc: GDLCalculator) -> list[np.ndarray]:
    """[3N, 3N] Hessian (eV/Å^2) of each structure, all at once: the structures' blocks of the
    batch Hessian are independent, so one backward pass per coordinate index k (the k-th
    coordinate of every structure together) gives row k of every structure's Hessian."""
    if not structures:
        return []
    batch = collate([calc.graph(atoms) for atoms in structures])
    positions = batch[keys.POSITIONS].detach().clone().requires_grad_(True)
    _, mean = _batched(calc, structures, create_graph=True, batch={**batch, keys.POSITIONS: positions})
    gradient = -mean[keys.FORCES]  # [n_atoms, 3]
    ptr = batch[keys.PTR].tolist()
    sizes = [3 * (ptr[g + 1] - ptr[g]) for g in range(len(structures))]
    rows: list[list[torch.Tensor]] = [[] for _ in structures]
    flat = gradient.reshape(-1)
    for k in range(max(sizes)):
        picked = [3 * ptr[g] + k for g in range(len(structures)) if k < sizes[g]]
        (row,) = torch.autograd.grad(flat[picked].sum(), positions, retain_graph=True)
        row = row.reshape(-1)
        for g in range(len(structures)):
            if k < sizes[g]:
                rows[g].append(row[3 * ptr[g] : 3 * ptr[g + 1]])
    hessians = []
    for g in range(len(structures)):
        matrix = torch.stack(rows[g]).detach().double().cpu().numpy()
        hessians.append(0.5 * (matrix + matrix.T))
    return hessians

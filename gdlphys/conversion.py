"""The one conversion between ``ase.Atoms``, stored frames and graph dicts, both ways.

A *frame* is the HDF5 row form (:mod:`gdlphys.data.hdf5`): numpy ``numbers``, ``positions``,
``cell``, ``pbc`` and optional labels ``energy`` (float, eV), ``forces`` [n, 3], ``stress``
(Voigt, 6) and ``dipole`` [3]. Stress is Voigt in frames and in ASE results, 3x3 in graphs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from gdlphys import keys

if TYPE_CHECKING:
    import torch

__all__ = [
    "LABELS", "atoms_to_frame", "atoms_to_graph", "batch_to_atoms", "frame_to_atoms", "frame_to_graph",
    "stress_to_3x3", "stress_to_voigt",
]

LABELS = ("energy", "forces", "stress", "dipole")  # frame label names, also ASE's result names


def stress_to_voigt(stress: Any) -> np.ndarray:
    """6 Voigt values (xx, yy, zz, yz, xz, xy) from 6 or 9 values."""
    stress = np.asarray(stress, dtype=np.float64)
    if stress.size == 9:
        return full_3x3_to_voigt_6_stress(stress.reshape(3, 3))
    if stress.shape == (6,):
        return stress
    raise ValueError(f"stress must have 6 (Voigt) or 9 (3x3) values, got shape {stress.shape}")


def stress_to_3x3(stress: Any) -> np.ndarray:
    """The 3x3 tensor from 6 Voigt or 9 values."""
    return voigt_6_to_full_3x3_stress(stress_to_voigt(stress))


def atoms_to_frame(atoms: Atoms, results: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``atoms`` and its calculator's results (or ``results``) as a frame; labels it lacks are left out."""
    if results is None:
        results = atoms.calc.results if atoms.calc is not None else {}
    frame: dict[str, Any] = {
        "numbers": np.asarray(atoms.numbers),
        "positions": np.asarray(atoms.positions, dtype=np.float64),
        "cell": np.asarray(atoms.cell.array, dtype=np.float64),
        "pbc": np.asarray(atoms.pbc, dtype=bool),
    }
    for name in LABELS:
        value = results.get(name)
        if value is None:
            continue
        if name == "energy":
            frame[name] = float(np.asarray(value).reshape(()))
        elif name == "stress":
            frame[name] = stress_to_voigt(value)
        else:
            frame[name] = np.asarray(value, dtype=np.float64)
    return frame


def frame_to_atoms(frame: Mapping[str, Any], smiles: str | None = None) -> Atoms:
    """A frame as ``ase.Atoms`` with its labels in a SinglePointCalculator."""
    atoms = Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])
    results: dict[str, Any] = {name: frame[name] for name in LABELS if frame.get(name) is not None}
    if "energy" in results:
        results["energy"] = float(results["energy"])
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    if smiles:
        atoms.info["smiles"] = smiles
    return atoms


def frame_to_graph(frame: Mapping[str, Any], cutoff: float, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A frame -> single-graph dict with its neighbour list and labels (``dtype`` default float64)."""
    import torch  # the frame <-> Atoms half stays light: the HDF5 reader needs no torch

    from gdlphys.graph import structure_graph

    dtype = dtype or torch.float64
    graph = structure_graph(frame["numbers"], frame["positions"], frame["cell"], frame["pbc"], cutoff=cutoff, dtype=dtype)
    if frame.get("energy") is not None:
        graph[keys.ENERGY] = torch.tensor([float(frame["energy"])], dtype=dtype)
    if frame.get("forces") is not None:
        graph[keys.FORCES] = torch.as_tensor(np.asarray(frame["forces"]), dtype=dtype).reshape(-1, 3)
    if frame.get("stress") is not None:
        graph[keys.STRESS] = torch.as_tensor(stress_to_3x3(frame["stress"]), dtype=dtype).reshape(1, 3, 3)
    if frame.get("dipole") is not None:
        graph[keys.DIPOLE] = torch.as_tensor(np.asarray(frame["dipole"]), dtype=dtype).reshape(1, 3)
    return graph


def atoms_to_graph(atoms: Atoms, cutoff: float, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """``ase.Atoms`` (with its calculator's labels, if any) -> single-graph dict."""
    return frame_to_graph(atoms_to_frame(atoms), cutoff, dtype)


def batch_to_atoms(batch: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor] | None = None) -> list[Atoms]:
    """The structures of a batch as ``ase.Atoms``, labelled by ``values`` (e.g. a potential's
    predictions: ENERGY, FORCES, STRESS, DIPOLE) or else by the batch's own labels."""
    values = batch if values is None else values
    offsets = batch[keys.PTR].cpu().numpy() if keys.PTR in batch else np.concatenate(
        [[0], np.cumsum(batch[keys.NUM_ATOMS].cpu().numpy())]
    )

    def array(key: str) -> np.ndarray | None:
        return values[key].detach().double().cpu().numpy() if key in values else None

    energy, forces, stress, dipole = (array(k) for k in (keys.ENERGY, keys.FORCES, keys.STRESS, keys.DIPOLE))
    positions = batch[keys.POSITIONS].detach().double().cpu().numpy()
    numbers = batch[keys.ATOMIC_NUMBERS].cpu().numpy()
    cells = batch[keys.CELL].detach().double().cpu().numpy().reshape(-1, 3, 3)
    pbc = batch[keys.PBC].cpu().numpy().reshape(-1, 3)
    structures: list[Atoms] = []
    for g in range(len(cells)):
        atoms_slice = slice(int(offsets[g]), int(offsets[g + 1]))
        frame: dict[str, Any] = {"numbers": numbers[atoms_slice], "positions": positions[atoms_slice], "cell": cells[g], "pbc": pbc[g]}
        if energy is not None:
            frame["energy"] = float(energy[g])
        if forces is not None:
            frame["forces"] = forces[atoms_slice]
        if stress is not None:
            frame["stress"] = stress_to_voigt(stress[g])
        if dipole is not None:
            frame["dipole"] = dipole[g]
        structures.append(frame_to_atoms(frame))
    return structures


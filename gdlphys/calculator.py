"""The ASE calculator: attaches a gdlphys potential to MD, relaxations and vibrations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from gdlphys import keys
from gdlphys.graph import structure_graph
from gdlphys.models.files import load_potential
from gdlphys.models.potential import Potential


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return getattr(torch, dtype)


class GDLCalculator(Calculator):
    """ASE calculator for a gdlphys potential.

    Args:
        potential: a Potential, a shipped potential's name (e.g. "ethanol-xtb"), a potential
            file, or the RUN_DIR of ``gdlphys train``.
        device: "cpu", "cuda", "cuda:1", or None/"auto" (CUDA when present).
        dtype: "float32" or "float64"; None keeps the precision the potential was trained in.
            Any potential runs in float64 on request (a private copy; the original is untouched).

    Results: ``energy``, ``free_energy`` (eV), ``energies`` (per atom, eV), ``forces`` (eV/Å),
    and ``stress`` (Voigt, eV/Å^3) for structures periodic in all three directions.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters: dict = {}

    def __init__(
        self,
        potential: Potential | str | Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        loaded = load_potential(potential)
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, loaded.dtype)
        if loaded.dtype != self.dtype or loaded.species_lookup.device != self.device:
            import copy

            loaded = copy.deepcopy(loaded)  # never change the caller's potential as a side effect
        self.potential = loaded.to(device=self.device, dtype=self.dtype).eval()
        for parameter in self.potential.parameters():
            parameter.requires_grad_(False)  # only positions (and strain) need gradients at inference

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if len(atoms) == 0:
            raise ValueError("cannot evaluate an empty structure (0 atoms)")
        pbc = np.asarray(atoms.pbc, dtype=bool)
        want_stress = "stress" in properties
        if want_stress and not pbc.all():
            raise ValueError("stress needs a structure periodic in all three directions (atoms.pbc all True)")
        graph = structure_graph(
            atoms.numbers, atoms.positions, atoms.cell.array, pbc,
            cutoff=self.potential.cutoff, dtype=self.dtype, device=self.device,
        )
        out = self.potential(graph, compute_forces=True, compute_stress=want_stress)
        energy = float(out[keys.ENERGY].detach().sum().cpu())
        if not np.isfinite(energy):
            raise FloatingPointError(f"the potential gave a non-finite energy ({energy}) for this structure")
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out[keys.ATOMIC_ENERGIES].detach().cpu().double().numpy(),
            "forces": out[keys.FORCES].detach().cpu().double().numpy(),
        }
        if want_stress:
            stress = out[keys.STRESS].detach().cpu().double().numpy()[0]
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

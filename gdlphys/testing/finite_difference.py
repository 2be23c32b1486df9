"""Forces and stress against central finite differences of the energy."""

from __future__ import annotations

import torch

from gdlphys import keys


def assert_forces_match_finite_differences(
    potential: torch.nn.Module, data: dict[str, torch.Tensor], *, step: float = 1e-4, atol: float = 1e-5, max_atoms: int = 6
) -> None:
    """F = -dE/dr for the first ``max_atoms`` atoms, by central differences (use float64)."""
    forces = potential(data, compute_forces=True)[keys.FORCES].detach()
    worst = 0.0
    for atom in range(min(max_atoms, data[keys.POSITIONS].shape[0])):
        for axis in range(3):
            energies = []
            for sign in (1.0, -1.0):
                d = dict(data)
                pos = data[keys.POSITIONS].detach().clone()
                pos[atom, axis] += sign * step
                d[keys.POSITIONS] = pos
                energies.append(potential(d, compute_forces=False)[keys.ENERGY].detach().sum())
            numeric = -(energies[0] - energies[1]) / (2 * step)
            worst = max(worst, abs(float(numeric - forces[atom, axis])))
    assert worst <= atol, f"forces differ from finite differences by {worst:.3g} eV/Å (> {atol:.1g})"


def assert_stress_matches_finite_differences(
    potential: torch.nn.Module, data: dict[str, torch.Tensor], *, step: float = 1e-5, atol: float = 1e-6
) -> None:
    """stress = (1/V) dE/d(strain) for a single periodic graph, by straining cell and positions."""
    stress = potential(data, compute_forces=True, compute_stress=True)[keys.STRESS].detach()[0]
    cell = data[keys.CELL][0].detach()
    volume = torch.linalg.det(cell).abs()
    worst = 0.0
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1.0, -1.0):
                strain = torch.eye(3, dtype=cell.dtype, device=cell.device)
                strain[i, j] += sign * step
                d = dict(data)
                d[keys.POSITIONS] = data[keys.POSITIONS].detach() @ strain.T
                d[keys.CELL] = (cell @ strain.T).unsqueeze(0)
                energies.append(potential(d, compute_forces=False)[keys.ENERGY].detach().sum())
            numeric = (energies[0] - energies[1]) / (2 * step) / volume
            worst = max(worst, abs(float(numeric - stress[i, j])))
    assert worst <= atol, f"stress differs from finite differences by {worst:.3g} eV/Å^3 (> {atol:.1g})"

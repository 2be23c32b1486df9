"""Harmonic vibrations and ideal-gas thermochemistry of a relaxed molecule.

The Hessian comes from any ASE calculator by central differences of the forces, or,
for a gdlphys potential and its graph dict, exactly by autograd (second derivatives of
the one energy).
Translations and rotations are projected out of the mass-weighted Hessian, so the
3N-6 (3N-5) frequencies left are the vibrations, free of numerical rotation noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from ase import Atoms, units
from ase.thermochemistry import IdealGasThermo

from gdlphys import keys

if TYPE_CHECKING:
    from gdlphys.models.potential import Potential


def hessian_autograd(potentials: Potential | Sequence[Potential], graph: dict[str, torch.Tensor]) -> np.ndarray:
    """[3N, 3N] d2E/dr2 (eV/Å^2) of a potential, or a committee's mean, on one structure's graph, by double backward."""
    members = [potentials] if isinstance(potentials, torch.nn.Module) else list(potentials)
    graph = dict(graph)  # the caller's dict keeps its own positions
    positions = graph[keys.POSITIONS].detach().clone().requires_grad_(True)
    graph[keys.POSITIONS] = positions
    total = None
    for potential in members:
        out = potential(graph, compute_forces=True, create_graph=True)
        total = -out[keys.FORCES] if total is None else total - out[keys.FORCES]
    gradient = (total / len(members)).reshape(-1)
    rows = [torch.autograd.grad(gradient[k], positions, retain_graph=True)[0].reshape(-1) for k in range(gradient.numel())]
    hessian = torch.stack(rows).detach().double().cpu().numpy()
    return 0.5 * (hessian + hessian.T)


def hessian_finite_differences(atoms: Atoms, step: float = 0.005) -> np.ndarray:
    """[3N, 3N] Hessian by central differences of the forces of ``atoms.calc`` (6N force calls)."""
    work = atoms.copy()
    work.calc = atoms.calc
    n = len(work)
    base = atoms.positions.copy()
    hessian = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        i, axis = divmod(k, 3)
        forces = []
        for sign in (1.0, -1.0):
            displaced = base.copy()
            displaced[i, axis] += sign * step
            work.positions = displaced
            forces.append(work.get_forces().reshape(-1))
        hessian[k] = -(forces[0] - forces[1]) / (2 * step)
    return 0.5 * (hessian + hessian.T)


def geometry_kind(atoms: Atoms, tol: float = 1e-3) -> str:
    if len(atoms) == 1:
        return "monatomic"
    moments = np.sort(atoms.get_moments_of_inertia())
    return "linear" if moments[0] < tol * max(moments[-1], 1e-12) else "nonlinear"


def _rigid_body_basis(atoms: Atoms) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations, [3N, 6 or 5]."""
    masses = atoms.get_masses()
    sqrt_m = np.sqrt(masses)
    centred = atoms.positions - atoms.get_center_of_mass()
    vectors = []
    for axis in range(3):
        t = np.zeros((len(atoms), 3))
        t[:, axis] = sqrt_m
        vectors.append(t.reshape(-1))
    for axis in range(3):
        r = np.cross(np.eye(3)[axis], centred) * sqrt_m[:, None]
        vectors.append(r.reshape(-1))
    q, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return q[:, s > 1e-6 * s.max()]  # a linear molecule has one rotation fewer


@dataclass
class HarmonicModes:
    energies_ev: np.ndarray  # vibrational quanta hbar*omega, eV; imaginary modes as negative numbers
    frequencies_cm1: np.ndarray  # same, in cm^-1 (negative = imaginary)
    geometry: str

    @property
    def n_imaginary(self) -> int:
        return int(np.sum(self.energies_ev < 0))

    @property
    def zero_point_energy(self) -> float:
        return 0.5 * float(np.sum(self.energies_ev[self.energies_ev > 0]))


def harmonic_modes(atoms: Atoms, hessian: np.ndarray) -> HarmonicModes:
    """Vibrational energies from a Cartesian Hessian with rigid-body motion projected out."""
    kind = geometry_kind(atoms)
    if kind == "monatomic":
        return HarmonicModes(np.zeros(0), np.zeros(0), kind)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    weighted = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    rigid = _rigid_body_basis(atoms)
    projector = np.eye(len(weighted)) - rigid @ rigid.T
    eigenvalues = np.linalg.eigvalsh(projector @ weighted @ projector)
    n_vib = 3 * len(atoms) - rigid.shape[1]
    # the rigid-body modes are the ones projected to (numerically) zero: drop the smallest |lambda|
    eigenvalues = np.sort(eigenvalues[np.argsort(np.abs(eigenvalues))[-n_vib:]])
    # hbar*omega in eV from lambda in eV/(Å^2 amu)
    scale = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
    energies = np.sign(eigenvalues) * scale * np.sqrt(np.abs(eigenvalues))
    return HarmonicModes(energies, energies / units.invcm, kind)


@dataclass
class Thermochemistry:
    temperature_k: float
    pressure_pa: float
    zpe_ev: float
    enthalpy_ev: float
    entropy_ev_per_k: float
    gibbs_ev: float


def ideal_gas_thermochemistry(
    atoms: Atoms, energy: float, modes: HarmonicModes, temperature_k: float = 298.15,
    pressure_pa: float = 101325.0, symmetry_number: int = 1, spin: float = 0.0,
) -> Thermochemistry:
    """H, S, G of the ideal gas (rigid rotor, harmonic oscillator; imaginary modes left out)."""
    real = modes.energies_ev[modes.energies_ev > 0]
    thermo = IdealGasThermo(
        vib_energies=list(real), geometry=modes.geometry, potentialenergy=energy, atoms=atoms,
        symmetrynumber=symmetry_number, spin=spin, vib_selection="all",
    )
    return Thermochemistry(
        temperature_k=temperature_k,
        pressure_pa=pressure_pa,
        zpe_ev=modes.zero_point_energy,
        enthalpy_ev=float(thermo.get_enthalpy(temperature_k, verbose=False)),
        entropy_ev_per_k=float(thermo.get_entropy(temperature_k, pressure_pa, verbose=False)),
        gibbs_ev=float(thermo.get_gibbs_energy(temperature_k, pressure_pa, verbose=False)),
    )

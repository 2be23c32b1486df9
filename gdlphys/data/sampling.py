"""Where labelled frames come from: Langevin MD, or normal-mode sampling around a relaxed minimum.

Both take one conformer, a calculator factory (a fresh calculator per label, so a label is a
function of the geometry alone) and a random generator, and return the kept frames labelled,
with the count of calculator calls they cost (the labelling budget is counted in those).

- **MD**: Langevin at ``temperature`` from the conformer; after ``equilibration_steps``, one frame
  every ``stride`` steps. Each kept frame costs ``stride`` MD calls plus its label.
- **Normal modes** (as ANI's data were made): relax the conformer (LBFGS), take the Hessian by
  central differences of the forces, and draw displacements from the classical harmonic
  Boltzmann distribution at ``temperature`` along the vibrational modes (translations and
  rotations projected out). The minimum itself is kept too (once per conformer). The relaxation
  and the Hessian cost about ``6 N + steps`` calls once per conformer, shared by all its
  temperatures; each further frame costs one label. Soft modes are held at
  ``min_wavenumber`` and a displacement is scaled down until no atom moves more than
  ``max_displacement``: the harmonic picture is wrong far along a torsion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation

from gdlphys.data.finite import first_nonfinite

__all__ = ["MDSampling", "NormalModeSampling", "SAMPLINGS", "harmonic_displacements", "labelled_copy", "normal_modes"]

SAMPLINGS = ("md", "normal-modes")


def labelled_copy(atoms: Atoms, calc: Calculator) -> Atoms:
    """A copy of ``atoms`` whose SinglePointCalculator holds ``calc``'s results (energy, forces, dipole; stress if periodic).

    A NaN or an infinity in the geometry or the results (a failed SCF) is a ValueError naming the key and atom."""
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    results = {
        "energy": calc.get_potential_energy(atoms),
        "forces": calc.get_forces(atoms),
        "dipole": calc.get_dipole_moment(atoms),
    }
    if atoms.pbc.any():
        results["stress"] = calc.get_stress(atoms)
    bad = first_nonfinite({"positions": frame.positions, "cell": frame.cell.array, **results})
    if bad is not None:
        raise ValueError(f"{type(calc).__name__} gave a non-finite label: {bad.what}")
    frame.calc = SinglePointCalculator(frame, **results)
    if "smiles" in atoms.info:
        frame.info["smiles"] = atoms.info["smiles"]
    return frame


def _thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)


Label = Callable[[Atoms], Atoms]  # geometry -> labelled copy (a fresh calculator each call)


@dataclass(frozen=True)
class MDSampling:
    """Langevin MD frames (``friction`` in 1/fs)."""

    temperature: float = 500.0
    frames: int = 100
    stride: int = 10
    timestep_fs: float = 0.5
    friction: float = 0.01
    equilibration_steps: int = 200

    kind = "md"

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1 or self.equilibration_steps < 0:
            raise ValueError("frames and stride must be >= 1 and equilibration_steps >= 0")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 K, got {self.temperature}")

    def settings(self) -> dict:
        return asdict(self)

    def sample(self, atoms: Atoms, calc: Calculator, label: Label, rng: np.random.Generator,
               on_frame: Callable[[], None], cache: dict | None = None) -> tuple[list[Atoms], int]:
        atoms = atoms.copy()
        atoms.calc = calc
        atoms.set_constraint(FixCom())  # no drift; ASE deprecates Langevin's own fixcm
        _thermalize(atoms, self.temperature, rng)
        dynamics = Langevin(
            atoms, timestep=self.timestep_fs * units.fs, temperature_K=self.temperature,
            friction=self.friction / units.fs, fixcm=False, rng=rng,
        )
        dynamics.run(self.equilibration_steps)
        sampled = []
        for _ in range(self.frames):
            dynamics.run(self.stride)
            sampled.append(label(atoms))
            on_frame()
        calls = 1 + self.equilibration_steps + self.frames * (self.stride + 1)
        return sampled, calls


def _rigid_motions(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations, [k, 3N] (k = 6, or 5 if linear)."""
    sqrt_m = np.sqrt(masses)[:, None]
    centred = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    vectors = []
    for axis in np.eye(3):
        vectors.append((sqrt_m * axis).ravel())
        vectors.append((sqrt_m * np.cross(axis, centred)).ravel())
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s > 1e-6 * s.max()].T


def normal_modes(atoms: Atoms, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational modes of a Hessian [3N, 3N] (eV/Å^2): eigenvalues of the mass-weighted Hessian
    (eV/Å^2/amu) and mass-weighted orthonormal eigenvectors [n_modes, 3N], rigid motions removed."""
    masses = atoms.get_masses()
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    weighted = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    weighted = 0.5 * (weighted + weighted.T)
    rigid = _rigid_motions(atoms.positions, masses)
    # An orthonormal basis of the vibrations (the complement of the rigid motions), then their Hessian.
    u, _, _ = np.linalg.svd(np.eye(len(weighted)) - rigid.T @ rigid)
    basis = u[:, : len(weighted) - len(rigid)]
    values, coefficients = np.linalg.eigh(basis.T @ weighted @ basis)
    vectors = (basis @ coefficients).T
    # a sign per mode that rounding cannot flip (its largest component positive): reproducible samples
    signs = np.sign(vectors[np.arange(len(vectors)), np.abs(vectors).argmax(axis=1)])
    return values, vectors * signs[:, None]


def _wavenumber_to_eigenvalue(wavenumber: float) -> float:
    """cm^-1 -> eigenvalue of the mass-weighted Hessian (eV/Å^2/amu), ASE's conversion."""
    s = units._hbar * 1e10 / np.sqrt(units._e * units._amu)  # hbar*omega (eV) = s * sqrt(eigenvalue)
    return (wavenumber * units.invcm / s) ** 2


def harmonic_displacements(
    values: np.ndarray, vectors: np.ndarray, masses: np.ndarray, temperature: float, rng: np.random.Generator, n: int,
    min_wavenumber: float = 0.0, max_displacement: float = np.inf,
) -> np.ndarray:
    """[n, n_atoms, 3] displacements (Å) drawn from the classical Boltzmann distribution at
    ``temperature`` of the harmonic energy of modes ``values``/``vectors`` (:func:`normal_modes`):
    each mode coordinate is Gaussian with variance kT / eigenvalue. Eigenvalues below
    ``min_wavenumber``'s are raised to it; a displacement moving an atom more than
    ``max_displacement`` is scaled down to that."""
    floor = _wavenumber_to_eigenvalue(min_wavenumber) if min_wavenumber > 0 else 1e-12
    values = np.maximum(values, floor)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    q = rng.normal(size=(n, len(values))) * np.sqrt(units.kB * temperature / values)
    shifts = ((q @ vectors) * inv_sqrt_m).reshape(n, -1, 3)
    largest = np.linalg.norm(shifts, axis=2).max(axis=1, initial=0.0)
    scale = np.minimum(1.0, max_displacement / np.maximum(largest, 1e-300))
    return shifts * scale[:, None, None]


@dataclass(frozen=True)
class NormalModeSampling:
    """Harmonic Boltzmann displacements around the relaxed conformer (see the module doc)."""

    temperature: float = 300.0
    frames: int = 10
    fmax: float = 0.01  # eV/Å, relaxation
    max_steps: int = 500
    delta: float = 0.005  # Å, finite-difference step of the Hessian
    min_wavenumber: float = 100.0  # cm^-1, floor for soft and imaginary modes
    max_displacement: float = 0.4  # Å, largest move of one atom
    keep_minimum: bool = True

    kind = "normal-modes"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 K, got {self.temperature}")

    def settings(self) -> dict:
        return asdict(self)

    def modes(self, atoms: Atoms, calc: Calculator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Relaxed positions, mode eigenvalues and vectors of ``atoms``, and the calls they cost."""
        from ase.optimize import LBFGS

        atoms = atoms.copy()
        atoms.calc = calc
        optimizer = LBFGS(atoms, logfile=None)
        optimizer.run(fmax=self.fmax, steps=self.max_steps)
        minimum = atoms.positions.copy()
        hessian = np.zeros((3 * len(atoms), 3 * len(atoms)))
        for i in range(len(atoms)):
            for c in range(3):
                displaced = []
                for sign in (1.0, -1.0):
                    atoms.positions = minimum
                    atoms.positions[i, c] += sign * self.delta
                    displaced.append(atoms.get_forces().ravel())
                hessian[3 * i + c] = -(displaced[0] - displaced[1]) / (2.0 * self.delta)
        atoms.positions = minimum
        values, vectors = normal_modes(atoms, 0.5 * (hessian + hessian.T))
        return minimum, values, vectors, optimizer.nsteps + 1 + 6 * len(atoms)

    def sample(self, atoms: Atoms, calc: Calculator, label: Label, rng: np.random.Generator,
               on_frame: Callable[[], None], cache: dict | None = None) -> tuple[list[Atoms], int]:
        """Frames around the minimum; ``cache`` (one dict per conformer) shares the relaxation and the
        Hessian between samplings of one conformer (other temperatures), and its minimum is kept once."""
        cache = {} if cache is None else cache
        calls = 0
        if "modes" not in cache:
            *cache["modes"], calls = self.modes(atoms, calc)
        minimum, values, vectors = cache["modes"]
        atoms = atoms.copy()
        sampled = []
        if self.keep_minimum and not cache.get("minimum_kept"):
            atoms.positions = minimum
            sampled.append(label(atoms))
            on_frame()
            cache["minimum_kept"] = True
        shifts = harmonic_displacements(
            values, vectors, atoms.get_masses(), self.temperature, rng, self.frames - len(sampled),
            min_wavenumber=self.min_wavenumber, max_displacement=self.max_displacement,
        )
        for shift in shifts:
            atoms.positions = minimum + shift
            sampled.append(label(atoms))
            on_frame()
        return sampled, calls + len(sampled)

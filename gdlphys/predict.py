"""SMILES -> conformers -> relaxed structures -> properties (energy, dipole, vibrations, thermochemistry).

Every molecule is handled on its own: a bad SMILES, an element the potential does not
know, a charged or multi-fragment species or an embedding failure is reported in that
molecule's ``error`` and the batch goes on.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.optimize import BFGS

from gdlphys.paths import find_shipped
from gdlphys.threads import ThreadPolicy, using_threads
from gdlphys.units import DEBYE_PER_E_ANGSTROM
from gdlphys.vibrations import (
    harmonic_modes,
    hessian_autograd,
    hessian_finite_differences,
    ideal_gas_thermochemistry,
)


def default_potential() -> str:
    """The broadest shipped potential: organic-xtb once shipped, else ethanol-xtb."""
    return "organic-xtb" if find_shipped("potentials", "organic-xtb") else "ethanol-xtb"


@dataclass
class MoleculeResult:
    smiles: str
    error: str | None = None
    numbers: list[int] | None = None
    positions: list[list[float]] | None = None  # relaxed, Å
    energy: float | None = None  # eV
    conformer_energies: list[float] | None = None  # eV, each relaxed conformer
    dipole: list[float] | None = None  # e*Å
    dipole_debye: float | None = None
    frequencies_cm1: list[float] | None = None  # negative = imaginary
    zpe_ev: float | None = None
    enthalpy_ev: float | None = None
    entropy_ev_per_k: float | None = None
    gibbs_ev: float | None = None
    temperature_k: float | None = None
    n_imaginary: int | None = None
    reference: dict | None = field(default=None)  # the same properties from GFN2-xTB, when asked

    def to_dict(self) -> dict:
        return asdict(self)

    def atoms(self) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions, info={"smiles": self.smiles, "energy": self.energy})


def _relax(atoms: Atoms, calc, fmax: float, steps: int) -> tuple[Atoms, float, bool]:
    atoms = atoms.copy()
    atoms.calc = calc
    converged = bool(BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps))
    return atoms, float(atoms.get_potential_energy()), converged


def _dipole(atoms: Atoms) -> np.ndarray | None:
    calc = atoms.calc
    if "dipole" not in getattr(calc, "implemented_properties", ()):
        return None
    return np.asarray(calc.get_property("dipole", atoms), dtype=float)


def properties_of(
    conformers: list[Atoms], calc, *, hessian: str, fmax: float, max_steps: int, temperature_k: float, pressure_pa: float
) -> dict:
    """Relax every conformer, keep the lowest, and compute its properties with ``calc``."""
    relaxed = [_relax(c, calc, fmax, max_steps) for c in conformers]
    energies = [e for _, e, _ in relaxed]
    best, energy, _ = relaxed[int(np.argmin(energies))]
    best.calc = calc
    if hessian == "autograd":
        matrix = hessian_autograd(calc.potentials, calc.graph(best))
    else:
        matrix = hessian_finite_differences(best)
    modes = harmonic_modes(best, matrix)
    thermo = ideal_gas_thermochemistry(best, energy, modes, temperature_k, pressure_pa)
    dipole = _dipole(best)
    return {
        "numbers": best.numbers.tolist(),
        "positions": best.positions.tolist(),
        "energy": energy,
        "conformer_energies": energies,
        "dipole": dipole.tolist() if dipole is not None else None,
        "dipole_debye": float(np.linalg.norm(dipole) * DEBYE_PER_E_ANGSTROM) if dipole is not None else None,
        "frequencies_cm1": modes.frequencies_cm1.tolist(),
        "n_imaginary": modes.n_imaginary,
        "zpe_ev": thermo.zpe_ev,
        "enthalpy_ev": thermo.enthalpy_ev,
        "entropy_ev_per_k": thermo.entropy_ev_per_k,
        "gibbs_ev": thermo.gibbs_ev,
        "temperature_k": temperature_k,
    }


def predict(
    smiles: Iterable[str],
    potential: str | Path | None = None,
    *,
    conformers: int = 5,
    temperature_k: float = 298.15,
    pressure_pa: float = 101325.0,
    fmax: float = 0.005,
    max_steps: int = 1000,
    reference: str | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> list[MoleculeResult]:
    """Properties of each SMILES, in input order; failures carry their reason in ``error``.

    ``threads``: CPU threads for each molecule's work; None: the calculator's policy
    (:class:`gdlphys.threads.ThreadPolicy`: one for molecules). Set only while it runs.
    """
    from gdlphys.calculator import GDLCalculator
    from gdlphys.molecules import smiles_to_atoms

    if reference not in (None, "xtb"):
        raise ValueError(f"reference must be None or 'xtb', got {reference!r}")
    if conformers < 1:
        raise ValueError("conformers must be >= 1")
    calc = GDLCalculator(potential or default_potential(), device=device, dtype="float64", threads=threads)
    policy = ThreadPolicy()
    known = set(calc.potential.species)
    smiles = list(smiles)
    results: list[MoleculeResult] = []
    from tqdm.auto import tqdm

    for text in tqdm(smiles, desc="predict", unit="mol", disable=not progress, file=sys.stderr):
        result = MoleculeResult(smiles=text)
        try:
            candidates = smiles_to_atoms(text, n_conformers=conformers, seed=seed)
            known_symbols = sorted(chemical_symbols[z] for z in known)
            missing = sorted(set(candidates[0].get_chemical_symbols()) - set(known_symbols))
            if missing:
                raise ValueError(
                    f"element(s) {', '.join(missing)} not supported by the potential (it knows {', '.join(known_symbols)})"
                )
            # the calculator sets its threads per call; the Hessian, outside it, runs with the same
            with using_threads(threads if threads is not None else policy(len(candidates[0]))):
                properties = properties_of(
                    candidates, calc, hessian="autograd", fmax=fmax, max_steps=max_steps,
                    temperature_k=temperature_k, pressure_pa=pressure_pa,
                )
            for name, value in properties.items():
                setattr(result, name, value)
            if reference == "xtb":
                from gdlphys.data.label import tblite_calculator

                result.reference = properties_of(
                    candidates, tblite_calculator("GFN2-xTB"), hessian="finite-differences", fmax=fmax,
                    max_steps=max_steps, temperature_k=temperature_k, pressure_pa=pressure_pa,
                )
                result.reference["method"] = "GFN2-xTB (tblite)"
        except (ValueError, RuntimeError, FloatingPointError) as err:  # per-molecule failure; the batch goes on
            result = MoleculeResult(smiles=text, error=str(err))
        results.append(result)
    return results


def read_smiles_file(path: str | Path) -> list[str]:
    """One SMILES per line (extra columns such as an ID are ignored; '#' starts a comment)."""
    lines = Path(path).read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]

"""SMILES -> conformers -> relaxed structures -> properties (energy, dipole, vibrations, thermochemistry).

Every molecule is handled on its own: a bad SMILES, an element the potential does not
know, a charged or multi-fragment species or an embedding failure is reported in that
molecule's ``error`` and the batch goes on.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.optimize import BFGS

from gdlphys.paths import find_shipped
from gdlphys.threads import CALL_SMALL_WORK_ATOMS, ThreadPolicy, using_threads
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
    force_std: float | None = None  # a committee's largest per-atom force spread at the minimum, eV/Å
    energy_std: float | None = None  # a committee's energy spread there, eV
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


def _properties(best: Atoms, energy: float, energies: list[float], matrix: np.ndarray, dipole: np.ndarray | None,
                temperature_k: float, pressure_pa: float) -> dict:
    modes = harmonic_modes(best, matrix)
    thermo = ideal_gas_thermochemistry(best, energy, modes, temperature_k, pressure_pa)
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
    return _properties(best, energy, energies, matrix, _dipole(best), temperature_k, pressure_pa)


def properties_of_many(
    molecules: list[list[Atoms]], calc, *, fmax: float, max_steps: int, temperature_k: float, pressure_pa: float,
    batch_size: int = 16,
) -> list[dict]:
    """:func:`properties_of` for many molecules at once (their conformers relaxed together in
    batched graphs, the lowest ones' Hessians and dipoles batched too; :mod:`gdlphys.batch`)."""
    from gdlphys.batch import evaluate_many, hessians_many, relax_many

    flat = [conformer for conformers in molecules for conformer in conformers]
    relaxed = relax_many(flat, calc, fmax=fmax, steps=max_steps, batch_size=batch_size)
    bests, energies_of = [], []
    start = 0
    for conformers in molecules:
        mine = relaxed[start : start + len(conformers)]
        start += len(conformers)
        energies = [e for _, e, _ in mine]
        energies_of.append(energies)
        bests.append(mine[int(np.argmin(energies))])
    structures = [atoms for atoms, _, _ in bests]
    hessians: list[np.ndarray] = []
    for k in range(0, len(structures), batch_size):
        hessians += hessians_many(structures[k : k + batch_size], calc)
    values = evaluate_many(structures, calc, batch_size=batch_size)
    return [
        _properties(atoms, energy, energies, matrix, value.get("dipole"), temperature_k, pressure_pa)
        for (atoms, energy, _), energies, matrix, value in zip(bests, energies_of, hessians, values)
    ]


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
    batch_size: int | None = None,
    progress: bool = True,
    threads: int | None = None,
    processes: int | None = None,
) -> list[MoleculeResult]:
    """Properties of each SMILES, in input order; failures carry their reason in ``error``.

    ``potential``: a shipped name, a potential file or RUN_DIR, a list of them (a committee), or a
    committee preset of ``ase_calculators/`` (name or YAML); a committee adds each molecule's
    ``force_std`` (largest per-atom force spread at its minimum, eV/Å) and ``energy_std``.

    ``batch_size`` molecules are relaxed (every conformer, each by its own BFGS) and their
    Hessians taken in one batched graph at a time; 1 handles them one by one. Both give the
    same results to the optimiser's tolerance. None: 16 on a GPU, 1 on a CPU (where a step's
    cost grows with its atoms, batching measured no faster: docs/predict.md). ``threads``: CPU threads for that work; None:
    the policy of :class:`gdlphys.threads.ThreadPolicy` for the batch's atoms. Set only while it runs.
    ``processes``: worker processes of one thread each, a molecule at a time each (results in input
    order); None: one per idle core on a CPU when neither ``batch_size`` > 1 nor ``threads`` is given
    (:func:`default_processes`), else 1.
    """
    if reference not in (None, "xtb"):
        raise ValueError(f"reference must be None or 'xtb', got {reference!r}")
    calc = _calculator(potential, device, threads)
    if batch_size is None:
        batch_size = 16 if calc.device.type == "cuda" else 1
    if conformers < 1 or batch_size < 1:
        raise ValueError("conformers and batch_size must be >= 1")
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ValueError(f"processes must be None or a positive integer, got {processes!r}")
    smiles = list(smiles)
    work = _Work(calc, batch_size, threads, reference, conformers, seed,
                 dict(fmax=fmax, max_steps=max_steps, temperature_k=temperature_k, pressure_pa=pressure_pa))
    if processes is None:
        processes = default_processes(len(smiles), calc.device.type, batch_size, threads)
    processes = min(processes, len(smiles))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(smiles), desc="predict", unit="mol", disable=not progress, file=sys.stderr)
    if processes > 1:
        if calc.device.type != "cpu":
            raise ValueError("processes > 1 shares CPU cores; on a GPU, batch molecules instead (batch_size)")
        results = []
        # fork: the workers share the loaded potential; each a thread, one molecule at a time, input order kept
        with ProcessPoolExecutor(processes, mp_context=get_context("fork"), initializer=_start_worker, initargs=(work,)) as pool:
            for result in pool.map(_worker_predict, smiles):
                results.append(result)
                bar.update(1)
    else:
        results = []
        for start in range(0, len(smiles), batch_size):
            results += work(smiles[start : start + batch_size])
            bar.update(len(results) - bar.n)
    bar.close()
    return results


def default_processes(n_molecules: int, device: str, batch_size: int, threads: int | None) -> int:
    """Worker processes of one thread each for ``n_molecules`` on a CPU: one per idle core (molecules
    are small: a process per core beats threads), one on a GPU, when batching or ``threads`` is set."""
    if device != "cpu" or batch_size > 1 or threads is not None or n_molecules < 2:
        return 1
    from gdlphys.threads import IdleCores, affinity_cores

    # the affinity, not OMP_NUM_THREADS: that limits each process's threads, and every worker has one
    return max(1, min(IdleCores()(affinity_cores()), n_molecules))


@dataclass
class _Work:
    """predict's work on a list of SMILES with one calculator: what a worker process runs too."""

    calc: Any
    batch_size: int
    threads: int | None
    reference: str | None
    conformers: int
    seed: int
    options: dict

    def __call__(self, smiles: list[str]) -> list[MoleculeResult]:
        from gdlphys.molecules import smiles_to_atoms

        calc, batch_size, threads, options = self.calc, self.batch_size, self.threads, self.options
        known_symbols = sorted(chemical_symbols[z] for z in calc.potential.species)
        results = [MoleculeResult(smiles=text) for text in smiles]
        candidates: dict[int, list[Atoms]] = {}
        for i, text in enumerate(smiles):  # per-molecule failures (SMILES, elements, embedding) are reported, the batch goes on
            try:
                candidates[i] = smiles_to_atoms(text, n_conformers=self.conformers, seed=self.seed)
                missing = sorted(set(candidates[i][0].get_chemical_symbols()) - set(known_symbols))
                if missing:
                    raise ValueError(
                        f"element(s) {', '.join(missing)} not supported by the potential (it knows {', '.join(known_symbols)})"
                    )
            except (ValueError, RuntimeError) as err:
                candidates.pop(i, None)
                results[i] = MoleculeResult(smiles=text, error=str(err))
        # the batched work runs outside the calculator's own calls: the same policy, for the atoms of one call
        sizes = [len(c[0]) * (len(c) if batch_size > 1 else 1) for c in candidates.values()]
        per_call = sum(sizes) if batch_size > 1 else max(sizes, default=0)
        with using_threads(threads if threads is not None else _POLICY(per_call)):
            found = _potential_properties(candidates, calc, batch_size, options)
        for i, value in found.items():
            if isinstance(value, Exception):
                results[i] = MoleculeResult(smiles=smiles[i], error=str(value))
                continue
            for name, item in value.items():
                setattr(results[i], name, item)
            if len(calc.potentials) > 1:
                _add_spread(results[i], calc)
            if self.reference == "xtb":
                _add_reference(results[i], candidates[i], options)
        return results


_POLICY = ThreadPolicy(CALL_SMALL_WORK_ATOMS)  # asked again for every batch of molecules
_WORKER: dict[str, _Work] = {}


def _start_worker(work: _Work) -> None:
    import os

    import torch

    os.environ["OMP_NUM_THREADS"] = "1"  # read by tblite's OpenMP when --reference xtb loads it here
    torch.set_num_threads(1)
    work.threads = 1  # the workers share the cores
    _WORKER["work"] = work


def _worker_predict(text: str) -> MoleculeResult:
    return _WORKER["work"]([text])[0]


def _calculator(potential, device: str | None, threads: int | None):
    """The float64 calculator of ``potential`` (see :func:`predict`)."""
    from gdlphys.calculator import GDLCalculator
    from gdlphys.presets import names_a_preset, read_preset

    potential = potential or default_potential()
    if names_a_preset(potential):
        preset = read_preset(potential)
        if preset.dispersion is not None:
            raise ValueError(f"preset {potential}: predict takes the potentials of a preset, not its dispersion "
                             "(its Hessians are the network's own); use a preset without dispersion")
        members = list(preset.potentials)
        return GDLCalculator(members if len(members) > 1 else members[0], device=device or preset.device, dtype="float64",
                             threads=threads)
    return GDLCalculator(list(potential) if isinstance(potential, tuple) else potential, device=device, dtype="float64",
                         threads=threads)


def _add_spread(result: MoleculeResult, calc) -> None:
    atoms = result.atoms()
    atoms.calc = calc
    atoms.get_forces()
    result.force_std = float(np.max(calc.results["forces_std"]))
    result.energy_std = float(calc.results["energy_std"])


def _potential_properties(candidates: dict[int, list[Atoms]], calc, batch_size: int, options: dict) -> dict:
    """index -> properties (or the exception of that molecule): batched, or one by one where a
    batch fails (so one molecule's failure stays its own) or ``batch_size`` is 1."""
    order = list(candidates)
    if batch_size > 1 and order:
        try:
            return dict(zip(order, properties_of_many([candidates[i] for i in order], calc, batch_size=batch_size, **options)))
        except (ValueError, RuntimeError, FloatingPointError):
            pass  # find which molecule, one at a time
    found: dict = {}
    for i in order:
        try:
            found[i] = properties_of(candidates[i], calc, hessian="autograd", **options)
        except (ValueError, RuntimeError, FloatingPointError) as err:
            found[i] = err
    return found


def _add_reference(result: MoleculeResult, conformers: list[Atoms], options: dict) -> None:
    from gdlphys.data.label import tblite_calculator

    try:
        result.reference = properties_of(conformers, tblite_calculator("GFN2-xTB"), hessian="finite-differences", **options)
        result.reference["method"] = "GFN2-xTB (tblite)"
    except (ValueError, RuntimeError, FloatingPointError) as err:
        result.reference = {"error": str(err), "method": "GFN2-xTB (tblite)"}

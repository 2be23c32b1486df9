"""Label molecules with GFN2-xTB (tblite): SMILES -> conformer -> Langevin MD -> labelled frames.

Per SMILES: an ETKDG conformer, Langevin MD at ``temperature`` on the tblite
potential energy surface, and after equilibration one frame every ``stride``
steps with energy, forces and dipole from the same tblite call that drove the MD.

Resumable: each molecule's frames go to ``OUTPUT.partial/<key>.h5`` (written
atomically), where ``key`` hashes the SMILES and every labelling argument. A
rerun with the same arguments skips molecules whose partial file exists; the
partials are merged into ``OUTPUT`` atomically and removed once every molecule
succeeded (after failures they stay, so fixing the list and rerunning is cheap).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.constraints import FixCom
from ase.md import velocitydistribution
from ase.md.velocitydistribution import Stationary, ZeroRotation

from gdlphys.data.hdf5 import read_hdf5
from gdlphys.data.hdf5_writer import FrameWriter
from gdlphys.molecules import smiles_to_atoms

__all__ = ["LabelFailure", "LabelResult", "label_atoms", "label_smiles", "tblite_calculator", "tblite_version"]

METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")


def tblite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tblite")
    except PackageNotFoundError:
        return "unknown"


def tblite_calculator(method: str = "GFN2-xTB") -> Calculator:
    """A quiet tblite ASE calculator (energy eV, forces eV/Å, dipole e*Å)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; tblite offers {', '.join(METHODS)}")
    from tblite.ase import TBLite

    return TBLite(method=method, verbosity=0)


def _snapshot(atoms: Atoms, calc: Calculator) -> Atoms:
    """A copy of ``atoms`` whose SinglePointCalculator holds ``calc``'s results for it."""
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    results = {
        "energy": calc.get_potential_energy(atoms),
        "forces": calc.get_forces(atoms),
        "dipole": calc.get_dipole_moment(atoms),
    }
    if atoms.pbc.any():
        results["stress"] = calc.get_stress(atoms)
    frame.calc = SinglePointCalculator(frame, **results)
    if "smiles" in atoms.info:
        frame.info["smiles"] = atoms.info["smiles"]
    return frame


def label_atoms(atoms: Atoms, method: str = "GFN2-xTB") -> Atoms:
    """``atoms`` labelled by tblite: a copy with a SinglePointCalculator (energy, forces, dipole; stress if periodic).

    A fresh calculator each time: the SCF starts from scratch, so a label is a
    function of the geometry alone (an MD run's warm-started SCF differs by ~1e-4 eV/Å).
    """
    return _snapshot(atoms, tblite_calculator(method))


def _thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)


class LabelFailure(NamedTuple):
    """A SMILES that was not labelled, and why (unpacks as ``smiles, reason``)."""

    smiles: str
    reason: str


@dataclass
class LabelResult:
    """What :func:`label_smiles` did. Path-like: ``open(result)`` opens the output file.

    ``path`` exists only if at least one molecule was labelled; ``failures``
    lists the SMILES that could not be (the CLI exits non-zero on any).
    """

    path: Path
    n_frames: int
    n_molecules: int
    failures: list[LabelFailure] = field(default_factory=list)

    def __fspath__(self) -> str:
        return str(self.path)


def _partial_key(smiles: str, occurrence: int, settings: dict) -> str:
    text = json.dumps({"smiles": smiles, "occurrence": occurrence, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _molecule_seed(seed: int, smiles: str, occurrence: int) -> int:
    """A seed per molecule independent of its place in the list (so adding SMILES keeps old ones)."""
    digest = hashlib.sha256(f"{seed}\0{smiles}\0{occurrence}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


def _run_md(
    smiles: str,
    *,
    seed: int,
    frames: int,
    temperature: float,
    timestep_fs: float,
    friction: float,
    stride: int,
    equilibration_steps: int,
    method: str,
    on_frame: Callable[[], None],
) -> list[Atoms]:
    atoms = smiles_to_atoms(smiles, n_conformers=1, seed=seed)[0]
    atoms.calc = tblite_calculator(method)
    atoms.set_constraint(FixCom())  # no drift; ASE deprecates Langevin's own fixcm
    rng = np.random.default_rng(seed)
    _thermalize(atoms, temperature, rng)
    dynamics = Langevin(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature,
        friction=friction / units.fs,
        fixcm=False,
        rng=rng,
    )
    dynamics.run(equilibration_steps)
    sampled = []
    for _ in range(frames):
        dynamics.run(stride)
        sampled.append(label_atoms(atoms, method))
        on_frame()
    return sampled


def label_smiles(
    smiles_list: Iterable[str],
    output: str | os.PathLike,
    *,
    frames: int = 100,
    temperature: float = 500.0,
    seed: int = 0,
    timestep_fs: float = 0.5,
    stride: int = 10,
    equilibration_steps: int = 200,
    friction: float = 0.01,
    method: str = "GFN2-xTB",
    progress: bool = True,
) -> LabelResult:
    """Label each SMILES with ``frames`` MD frames (GFN2-xTB via tblite) and write one HDF5 file.

    ``friction`` is in 1/fs. A SMILES that fails (invalid, charged, several
    fragments, embedding or SCF failure) is listed in ``result.failures``; the
    others are labelled and written. Rerunning with the same arguments after a
    kill resumes without relabelling finished molecules.
    """
    from tqdm.auto import tqdm

    smiles_list = list(smiles_list)
    if frames < 1 or stride < 1 or equilibration_steps < 0:
        raise ValueError("frames and stride must be >= 1 and equilibration_steps >= 0")
    tblite_calculator(method)  # fail early on a bad method or a missing tblite
    output = Path(output)
    partial_dir = output.with_name(output.name + ".partial")
    partial_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "frames": frames,
        "temperature": temperature,
        "seed": seed,
        "timestep_fs": timestep_fs,
        "stride": stride,
        "equilibration_steps": equilibration_steps,
        "friction": friction,
        "method": method,
        "tblite": tblite_version(),
    }
    software = f"tblite {settings['tblite']}"
    occurrences: dict[str, int] = {}
    done: list[Path] = []
    failures: list[LabelFailure] = []
    bar = tqdm(total=len(smiles_list) * frames, unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        for smiles in smiles_list:
            occurrence = occurrences.get(smiles, 0)
            occurrences[smiles] = occurrence + 1
            partial = partial_dir / f"{_partial_key(smiles, occurrence, settings)}.h5"
            bar.set_description(smiles[:30])
            if partial.exists():
                bar.update(frames)
                done.append(partial)
                continue
            labelled = [0]

            def on_frame() -> None:
                labelled[0] += 1
                bar.update(1)

            try:
                sampled = _run_md(
                    smiles,
                    seed=_molecule_seed(seed, smiles, occurrence),
                    frames=frames,
                    temperature=temperature,
                    timestep_fs=timestep_fs,
                    friction=friction,
                    stride=stride,
                    equilibration_steps=equilibration_steps,
                    method=method,
                    on_frame=on_frame,
                )
            except (ValueError, RuntimeError) as exc:  # invalid SMILES, embedding or SCF failure
                failures.append(LabelFailure(smiles, str(exc)))
                bar.update(frames - labelled[0])
                continue
            attrs = {"smiles": smiles, "settings": json.dumps(settings, sort_keys=True)}
            with FrameWriter(partial, method=method, software=software, attrs=attrs) as writer:
                writer.extend(sampled)
            done.append(partial)
    finally:
        bar.close()

    n_frames = 0
    if done:
        attrs = {"label_settings": json.dumps(settings, sort_keys=True)}
        with FrameWriter(output, method=method, software=software, attrs=attrs) as writer:
            for partial in done:
                writer.extend(read_hdf5(partial))
            n_frames = writer.n_frames
    if not failures:
        shutil.rmtree(partial_dir, ignore_errors=True)
    return LabelResult(path=output, n_frames=n_frames, n_molecules=len(done), failures=failures)

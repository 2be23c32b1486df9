"""Label molecules with GFN2-xTB (tblite): SMILES -> conformers -> sampled geometries -> labelled frames.

Per SMILES: ``conformers`` ETKDG conformers; from each, frames by every sampling asked for
(:mod:`gdlphys.data.sampling`: Langevin MD, normal modes around the relaxed minimum) at every
temperature, each frame labelled with energy, forces and dipole by a fresh tblite calculator.

Resumable: each molecule's frames go to ``OUTPUT.partial/<key>.h5`` (written atomically), where
``key`` hashes the SMILES and every labelling argument. A rerun with the same arguments skips
molecules whose partial file exists; the partials are merged into ``OUTPUT`` atomically and
removed once every molecule succeeded (after failures they stay, so fixing the list and
rerunning is cheap). ``workers`` > 1 labels molecules in that many processes of one thread each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from gdlphys.data.hdf5 import read_hdf5
from gdlphys.data.hdf5_writer import FrameWriter
from gdlphys.data.sampling import SAMPLINGS, MDSampling, NormalModeSampling, labelled_copy
from gdlphys.molecules import smiles_to_atoms

__all__ = [
    "LabelFailure", "LabelResult", "label_atoms", "label_smiles", "one_thread_worker", "tblite_calculator", "tblite_version",
]

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


def _check_method(method: str) -> None:
    from importlib.util import find_spec

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; tblite offers {', '.join(METHODS)}")
    if find_spec("tblite") is None:
        raise ModuleNotFoundError("labelling needs tblite (pip install tblite)")


def label_atoms(atoms: Atoms, method: str = "GFN2-xTB") -> Atoms:
    """``atoms`` labelled by tblite: a copy with a SinglePointCalculator (energy, forces, dipole; stress if periodic).

    A fresh calculator each time: the SCF starts from scratch, so a label is a
    function of the geometry alone (an MD run's warm-started SCF differs by ~1e-4 eV/Å).
    """
    return labelled_copy(atoms, tblite_calculator(method))


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
    calls_per_frame: float | None = None  # xTB calls per kept frame in this run (None: nothing new labelled)

    def __fspath__(self) -> str:
        return str(self.path)


def _partial_key(smiles: str, occurrence: int, settings: dict) -> str:
    text = json.dumps({"smiles": smiles, "occurrence": occurrence, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _molecule_seed(seed: int, smiles: str, occurrence: int) -> int:
    """A seed per molecule independent of its place in the list (so adding SMILES keeps old ones)."""
    digest = hashlib.sha256(f"{seed}\0{smiles}\0{occurrence}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


def _samplers(
    sampling: Sequence[str], temperatures: Sequence[float], frames: int, stride: int, timestep_fs: float,
    friction: float, equilibration_steps: int,
) -> list[MDSampling | NormalModeSampling]:
    unknown = [name for name in sampling if name not in SAMPLINGS]
    if unknown or not sampling:
        raise ValueError(f"unknown sampling {', '.join(unknown) or '(none)'}; choose from {', '.join(SAMPLINGS)}")
    samplers: list[MDSampling | NormalModeSampling] = []
    for name in sampling:
        for temperature in temperatures:
            if name == "md":
                samplers.append(MDSampling(temperature, frames, stride, timestep_fs, friction, equilibration_steps))
            else:
                samplers.append(NormalModeSampling(temperature, frames))
    return samplers


@dataclass
class _Molecule:
    """What one molecule cost: its frames, calculator calls and time."""

    frames: list[Atoms]
    calls: int
    seconds: float


def _sample_molecule(
    smiles: str, *, seed: int, conformers: int, samplers: Sequence[MDSampling | NormalModeSampling], method: str,
    on_frame=lambda: None,
) -> _Molecule:
    """Every sampler from every conformer of one molecule (RDKit conformers seeded by ``seed``)."""
    begin = time.perf_counter()
    starts = smiles_to_atoms(smiles, n_conformers=conformers, seed=seed)
    frames: list[Atoms] = []
    calls = 0
    for c, start in enumerate(starts):
        cache: dict = {}  # the conformer's relaxed minimum and modes, shared by its normal-mode samplings
        for s, sampler in enumerate(samplers):
            rng = np.random.default_rng([seed, c, s])
            try:
                sampled, cost = sampler.sample(
                    start, tblite_calculator(method), lambda a: label_atoms(a, method), rng, on_frame, cache
                )
            except ValueError as exc:  # e.g. a non-finite label: say which conformer and sampling
                raise ValueError(f"conformer {c}, {sampler.kind} sampling at {sampler.temperature:g} K: {exc}") from exc
            frames.extend(sampled)
            calls += cost
    return _Molecule(frames, calls, time.perf_counter() - begin)


def one_thread_worker() -> None:
    """Worker initialiser: one OpenMP thread per labelling process (several processes share the cores)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # read when tblite loads its OpenMP runtime, in this process
    import sys

    if "torch" in sys.modules:  # an OpenMP runtime already loaded by the parent: limit it directly
        sys.modules["torch"].set_num_threads(1)


def _label_job(job: tuple) -> tuple[int, str | None, int, int, float]:
    """Label one molecule into its partial file (in a worker): index, error or None, frames, calls, seconds."""
    index, smiles, partial, attrs, software, method, kwargs = job
    try:
        molecule = _sample_molecule(smiles, method=method, **kwargs)
    except (ValueError, RuntimeError) as exc:  # invalid SMILES, embedding or SCF failure
        return index, str(exc), 0, 0, 0.0
    with FrameWriter(partial, method=method, software=software, attrs=attrs) as writer:
        writer.extend(molecule.frames)
    return index, None, len(molecule.frames), molecule.calls, molecule.seconds


def label_smiles(
    smiles_list: Iterable[str],
    output: str | os.PathLike,
    *,
    frames: int = 100,
    temperature: float | Sequence[float] = 500.0,
    sampling: str | Sequence[str] = "md",
    conformers: int = 1,
    workers: int = 1,
    seed: int = 0,
    timestep_fs: float = 0.5,
    stride: int = 10,
    equilibration_steps: int = 200,
    friction: float = 0.01,
    method: str = "GFN2-xTB",
    progress: bool = True,
) -> LabelResult:
    """Label each SMILES (GFN2-xTB via tblite) and write one HDF5 file.

    Each molecule gets ``frames`` frames from each of its ``conformers`` conformers, for each
    ``sampling`` ("md": Langevin MD, one frame every ``stride`` steps after
    ``equilibration_steps``; "normal-modes": harmonic displacements around the relaxed minimum,
    the minimum included) at each ``temperature`` (K). ``friction`` is in 1/fs. A SMILES that
    fails (invalid, charged, several fragments, embedding or SCF failure) is listed in
    ``result.failures``; the others are labelled and written. Rerunning with the same arguments
    after a kill resumes without relabelling finished molecules. ``workers`` processes (one
    thread each) label molecules in parallel; the output is in input order whatever the workers.
    """
    from tqdm.auto import tqdm

    smiles_list = list(smiles_list)
    temperatures = [float(temperature)] if isinstance(temperature, (int, float)) else [float(t) for t in temperature]
    sampling = [sampling] if isinstance(sampling, str) else list(sampling)
    if conformers < 1 or workers < 1:
        raise ValueError("conformers and workers must be >= 1")
    samplers = _samplers(sampling, temperatures, frames, stride, timestep_fs, friction, equilibration_steps)
    _check_method(method)  # fail early, without loading tblite's OpenMP here (the workers load it with one thread)
    output = Path(output)
    partial_dir = output.with_name(output.name + ".partial")
    partial_dir.mkdir(parents=True, exist_ok=True)
    settings = {"seed": seed, "conformers": conformers, "samplers": [{"kind": s.kind, **s.settings()} for s in samplers]}
    settings.update(method=method, tblite=tblite_version())
    software = f"tblite {settings['tblite']}"
    per_molecule = conformers * len(samplers) * frames
    attrs_common = {"settings": json.dumps(settings, sort_keys=True)}

    occurrences: dict[str, int] = {}
    partials: list[Path] = []
    jobs = []
    for index, smiles in enumerate(smiles_list):
        occurrence = occurrences.get(smiles, 0)
        occurrences[smiles] = occurrence + 1
        partial = partial_dir / f"{_partial_key(smiles, occurrence, settings)}.h5"
        partials.append(partial)
        if not partial.exists():
            kwargs = {"seed": _molecule_seed(seed, smiles, occurrence), "conformers": conformers, "samplers": samplers}
            jobs.append((index, smiles, partial, {"smiles": smiles, **attrs_common}, software, method, kwargs))

    failures: dict[int, LabelFailure] = {}
    bar = tqdm(total=len(smiles_list) * per_molecule, unit="frame", disable=not progress, dynamic_ncols=True)
    bar.update((len(smiles_list) - len(jobs)) * per_molecule)
    calls = frames_made = 0

    def finished(index: int, error: str | None, n_frames: int, n_calls: int) -> None:
        nonlocal calls, frames_made
        if error is not None:
            failures[index] = LabelFailure(smiles_list[index], error)
        calls, frames_made = calls + n_calls, frames_made + n_frames
        if frames_made:
            bar.set_postfix_str(f"{calls / frames_made:.0f} xTB calls/frame, {len(failures)} failed")

    try:
        if workers == 1:
            for job in jobs:
                index, smiles = job[0], job[1]
                bar.set_description(smiles[:30])
                before = bar.n
                job[6]["on_frame"] = lambda: bar.update(1)
                _, error, n_frames, n_calls, _ = _label_job(job)
                bar.update(per_molecule - (bar.n - before))
                finished(index, error, n_frames, n_calls)
        elif jobs:
            # fork: works from any script (spawn re-runs __main__); tblite is not loaded in this process yet
            with ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=one_thread_worker) as pool:
                pending = {pool.submit(_label_job, job) for job in jobs}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index, error, n_frames, n_calls, _ = future.result()
                        bar.update(per_molecule)
                        finished(index, error, n_frames, n_calls)
    finally:
        bar.close()

    done = [p for i, p in enumerate(partials) if i not in failures and p.exists()]
    n_frames = 0
    if done:
        attrs = {"label_settings": json.dumps(settings, sort_keys=True)}
        with FrameWriter(output, method=method, software=software, attrs=attrs) as writer:
            for partial in done:
                writer.extend(read_hdf5(partial))
            n_frames = writer.n_frames
    if not failures:
        shutil.rmtree(partial_dir, ignore_errors=True)
    ordered = [failures[i] for i in sorted(failures)]
    return LabelResult(path=output, n_frames=n_frames, n_molecules=len(done), failures=ordered,
                       calls_per_frame=calls / frames_made if frames_made else None)

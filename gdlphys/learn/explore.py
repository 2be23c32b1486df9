"""Exploration: short Langevin trajectories on one member's forces (each member in turn) or on the
committee's mean, recording every ``interval`` steps a candidate frame and the whole committee's
per-atom force spread there.

Where the spread passes the hard limit (or the potential gives a non-finite force) that frame is
dropped, so no geometry the committee cannot describe at all reaches the labeller, and the
trajectory **rolls back**: it returns to the kept frame ``ROLLBACK_FRAMES`` frames earlier (or its
start), draws new Maxwell-Boltzmann velocities and goes on, up to ``rollbacks`` times; after that it
stops. The last kept frame before each such event is marked (``before_limit``): where an excursion
jumps past the limit within one interval, it is the loop's candidate of last resort. Trajectories
run in ``workers`` processes of one thread each (forked, as :func:`gdlphys.data.label.label_smiles`
labels molecules).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin

from gdlphys.calculator import GDLCalculator
from gdlphys.data.hdf5 import read_hdf5
from gdlphys.data.hdf5_writer import write_hdf5
from gdlphys.data.label import one_thread_worker
from gdlphys.io_utils import atomic_write
from gdlphys.learn.config import ROLLBACK_FRAMES
from gdlphys.nve import initialise_velocities

__all__ = ["Exploration", "TrajectoryJob", "TrajectorySummary", "explore"]


@dataclass(frozen=True)
class TrajectoryJob:
    """One exploration trajectory: where it starts, how hot, how long, when it stops."""

    index: int
    members: tuple[str, ...]  # the committee's potential files
    start: Atoms
    temperature: float
    steps: int
    timestep_fs: float
    interval: int
    friction: float
    hard_force_std: float
    seed: int
    rollbacks: int = 0  # restarts from an earlier frame at the hard limit before the trajectory stops
    driver: int | None = None  # the member whose forces move the atoms (None: the committee's mean)


@dataclass
class TrajectorySummary:
    index: int
    temperature: float
    steps_run: int
    time_fs: float
    frames: int
    max_spread: float  # eV/Å, over the kept frames
    stopped: str | None  # why it stopped early (None: it ran its full length)
    rollbacks: int = 0  # times it passed the hard limit and went back (runs written before rollbacks: 0)
    driver: int | None = None  # the member it moved on (None: the committee's mean; runs written before drivers)


@dataclass
class Exploration:
    """The candidate frames of one round (unlabelled) and the committee's spread on them."""

    frames: list[Atoms]  # info: trajectory, time_fs, temperature
    atom_spread: list[np.ndarray]  # per frame: per-atom force spread (eV/Å)
    trajectories: list[TrajectorySummary]

    @property
    def spread(self) -> np.ndarray:
        """Largest per-atom spread of each frame (eV/Å)."""
        return np.array([float(s.max()) for s in self.atom_spread])

    @property
    def full_length(self) -> bool:
        """Every trajectory ran all its steps without reaching the hard limit (no stop, no rollback)."""
        return all(t.stopped is None and t.rollbacks == 0 for t in self.trajectories)

    def before_limit(self) -> list[int]:
        """Frames kept last before a trajectory passed the hard limit (the limit's last safe frames)."""
        return [k for k, frame in enumerate(self.frames) if frame.info.get("before_limit")]

    def column(self, key: str) -> np.ndarray:
        return np.array([frame.info[key] for frame in self.frames])

    def save(self, directory: Path) -> None:
        """``explored.h5`` (geometries), ``spread.npz`` and ``trajectories.json``, each atomically;
        the last one is written last and marks the exploration complete."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.frames:
            write_hdf5(directory / "explored.h5", self.frames)
        with atomic_write(directory / "spread.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, spread=np.concatenate(self.atom_spread) if self.atom_spread else np.zeros(0),
                         counts=np.array([len(s) for s in self.atom_spread], dtype=np.int64),
                         trajectory=self.column("trajectory") if self.frames else np.zeros(0, np.int64),
                         time_fs=self.column("time_fs") if self.frames else np.zeros(0),
                         temperature=self.column("temperature") if self.frames else np.zeros(0),
                         before_limit=np.array([bool(f.info.get("before_limit")) for f in self.frames], dtype=bool))
        with atomic_write(directory / "trajectories.json") as tmp:
            Path(tmp).write_text(json.dumps([asdict(t) for t in self.trajectories], indent=2))

    @classmethod
    def load(cls, directory: Path) -> Exploration | None:
        """A saved exploration, or None where it was never completed."""
        if not (directory / "trajectories.json").is_file():
            return None
        trajectories = [TrajectorySummary(**t) for t in json.loads((directory / "trajectories.json").read_text())]
        stored = np.load(directory / "spread.npz")
        frames = read_hdf5(directory / "explored.h5") if stored["counts"].size else []
        if "before_limit" in stored:
            marked = stored["before_limit"]
        else:  # saved before rollbacks: the last frame of each stopped trajectory
            stopped = {t.index for t in trajectories if t.stopped is not None}
            last = {int(j): k for k, j in enumerate(stored["trajectory"]) if int(j) in stopped}
            marked = np.isin(np.arange(len(frames)), list(last.values()))
        for k, frame in enumerate(frames):
            frame.info.update(trajectory=int(stored["trajectory"][k]), time_fs=float(stored["time_fs"][k]),
                              temperature=float(stored["temperature"][k]))
            if marked[k]:
                frame.info["before_limit"] = True
        spreads = np.split(stored["spread"], np.cumsum(stored["counts"])[:-1]) if stored["counts"].size else []
        return cls(frames, list(spreads), trajectories)


def run_trajectory(job: TrajectoryJob) -> tuple[list[Atoms], list[np.ndarray], TrajectorySummary]:
    """One Langevin trajectory on the committee; candidate frames with their per-atom spreads."""
    calc = GDLCalculator(list(job.members), device="cpu", driver=job.driver if len(job.members) > 1 else None)
    atoms = Atoms(numbers=job.start.numbers, positions=job.start.positions, cell=job.start.cell, pbc=job.start.pbc)
    atoms.info.update({k: v for k, v in job.start.info.items() if k == "smiles"})
    atoms.calc = calc
    atoms.set_constraint(FixCom())  # no drift; ASE deprecates Langevin's own fixcm
    rng = np.random.default_rng(job.seed)
    initialise_velocities(atoms, job.temperature, rng)
    dyn = Langevin(atoms, timestep=job.timestep_fs * units.fs, temperature_K=job.temperature,
                   friction=job.friction / units.fs, fixcm=False, rng=rng)
    frames: list[Atoms] = []
    spreads: list[np.ndarray] = []
    recent = deque([atoms.positions.copy()], maxlen=ROLLBACK_FRAMES)  # the start, then the last kept frames
    stopped, rollbacks = None, 0
    atoms.get_forces()
    for _ in range(job.steps // job.interval):
        try:
            dyn.run(job.interval)
            spread = np.array(calc.results.get("forces_std", np.zeros(len(atoms))), dtype=np.float64)  # one member: none
            limit = None if spread.max() <= job.hard_force_std else (
                f"force spread {spread.max():.3f} eV/Å passed the hard limit {job.hard_force_std} eV/Å")
        except (FloatingPointError, ValueError) as err:  # non-finite forces or positions
            limit = f"{type(err).__name__}: {err}"
        if limit is not None:
            if frames:
                frames[-1].info["before_limit"] = True
            if rollbacks == job.rollbacks:
                stopped = limit
                break
            rollbacks += 1  # back to a frame the committee could describe, new velocities
            atoms.positions = recent[0]
            initialise_velocities(atoms, job.temperature, rng)
            continue
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions.copy(), cell=atoms.cell, pbc=atoms.pbc)
        frame.info.update(trajectory=job.index, time_fs=dyn.nsteps * job.timestep_fs, temperature=job.temperature)
        if "smiles" in atoms.info:
            frame.info["smiles"] = atoms.info["smiles"]
        frames.append(frame)
        spreads.append(spread)
        recent.append(frame.positions)
    summary = TrajectorySummary(
        job.index, job.temperature, int(dyn.nsteps), dyn.nsteps * job.timestep_fs, len(frames),
        max((float(s.max()) for s in spreads), default=0.0), stopped, rollbacks, job.driver,
    )
    return frames, spreads, summary


def explore(
    members: Sequence[str | Path],
    starts: Sequence[Atoms],
    temperatures: Sequence[float],
    trajectories: int,
    steps: int,
    timestep_fs: float,
    interval: int,
    friction: float,
    hard_force_std: float,
    seed: int,
    workers: int = 1,
    rollbacks: int = 0,
    on_trajectory: Callable[[TrajectorySummary, int], None] = lambda summary, total: None,
    drive: str = "mean",
    first_driver: int = 0,
) -> Exploration:
    """``trajectories`` trajectories per temperature, starting in turn from each of ``starts``; each
    goes back ``rollbacks`` times at the hard limit before it stops. ``drive``: "mean" (the
    committee's mean forces) or "members" (trajectory k on member ``first_driver + k`` modulo
    their number: a loop that moves ``first_driver`` on each round lets every member drive, however
    few trajectories a round has)."""
    jobs = []
    for t, temperature in enumerate(temperatures):
        for k in range(trajectories):
            index = t * trajectories + k
            jobs.append(TrajectoryJob(index, tuple(str(m) for m in members), starts[index % len(starts)], float(temperature),
                                      steps, timestep_fs, interval, friction, hard_force_std, seed * 100_003 + index, rollbacks,
                                      (first_driver + index) % len(members) if drive == "members" else None))
    results = []
    if workers == 1:
        for job in jobs:
            results.append(run_trajectory(job))
            on_trajectory(results[-1][2], len(jobs))
    else:
        # fork: any script works (spawn re-runs __main__); one thread per process, as the labellers
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("fork"), initializer=one_thread_worker) as pool:
            for result in pool.map(run_trajectory, jobs):
                results.append(result)
                on_trajectory(result[2], len(jobs))
    frames = [frame for result in results for frame in result[0]]
    spreads = [spread for result in results for spread in result[1]]
    return Exploration(frames, spreads, [result[2] for result in results])

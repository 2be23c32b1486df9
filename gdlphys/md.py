"""Molecular dynamics through the calculator on ASE's integrators, with energy bookkeeping."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet

from gdlphys.nve import energy_statistics, initialise_velocities  # noqa: F401  (initialise_velocities: public here too)


@dataclass
class MDReport:
    steps: int
    time_fs: float
    n_atoms: int
    ensemble: str
    steps_per_second: float
    initial_energy_ev: float
    final_energy_ev: float
    drift_mev_per_atom: float  # total energy change start -> end, per atom
    max_deviation_mev_per_atom: float  # largest |E(t) - E(0)| per atom
    energy_std_mev_per_atom: float
    mean_temperature_k: float

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        what = "total energy" if self.ensemble == "nve" else "total energy (not conserved: thermostat)"
        return (
            f"{self.steps} steps ({self.time_fs / 1000:.3g} ps, {self.ensemble.upper()}, {self.n_atoms} atoms): "
            f"{self.steps_per_second:.1f} steps/s; {what} drift {self.drift_mev_per_atom:+.4f} meV/atom, "
            f"max |dE| {self.max_deviation_mev_per_atom:.4f} meV/atom, std {self.energy_std_mev_per_atom:.4f} meV/atom; "
            f"<T> {self.mean_temperature_k:.0f} K"
        )


def run_md(
    atoms: Atoms,
    steps: int = 2000,
    timestep_fs: float = 0.5,
    temperature_k: float = 300.0,
    ensemble: str = "nve",
    friction_per_fs: float = 0.01,
    trajectory: str | Path | None = None,
    interval: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> MDReport:
    """Run MD on ``atoms`` (its calculator attached); velocities from Maxwell-Boltzmann at ``temperature_k``.

    Stops with a clear error at the first non-finite energy or force; the trajectory
    written so far stays on disk.
    """
    if atoms.calc is None:
        raise ValueError("attach a calculator first (atoms.calc = gdlphys.GDLCalculator(...))")
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if steps < 1 or timestep_fs <= 0:
        raise ValueError("steps must be >= 1 and the time step positive")
    atoms.get_forces()  # a structure the potential cannot take fails here, named, before any set-up
    rng = np.random.default_rng(seed)
    if temperature_k > 0 and len(atoms) > 1:  # a lone atom with its centre of mass at rest has no motion left
        initialise_velocities(atoms, temperature_k, rng)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        dyn = Langevin(atoms, timestep=dt, temperature_K=temperature_k, friction=friction_per_fs / units.fs, rng=rng)

    n = len(atoms)
    energies: list[float] = []
    temperatures: list[float] = []

    def record() -> None:
        epot = atoms.get_potential_energy()
        forces = atoms.get_forces()
        if not (np.isfinite(epot) and np.all(np.isfinite(forces))):
            raise FloatingPointError(f"non-finite energy or forces (E = {epot})")
        energies.append(epot + atoms.get_kinetic_energy())
        temperatures.append(atoms.get_temperature())

    dyn.attach(record, interval=1)
    traj = None
    if trajectory is not None:
        from ase.io.trajectory import Trajectory

        traj = Trajectory(str(trajectory), "w", atoms)
        dyn.attach(traj.write, interval=interval)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="MD", unit="step", file=sys.stderr, mininterval=1.0)
        dyn.attach(lambda: bar.update(1) if dyn.nsteps > 0 else None, interval=1)
    try:
        atoms.get_forces()  # first evaluation outside the timing: it builds caches
        start = time.perf_counter()
        try:
            dyn.run(steps)
        except FloatingPointError as err:
            kept = f"; the trajectory so far is kept in {trajectory}" if trajectory else ""
            raise FloatingPointError(
                f"MD stopped at step {dyn.nsteps}: {err}; the structure has likely left the potential's domain{kept}"
            ) from err
        elapsed = time.perf_counter() - start
    finally:
        if traj is not None:
            traj.close()
        if bar is not None:
            bar.close()
    e = np.asarray(energies)
    stats = energy_statistics(e, timestep_fs, n)
    return MDReport(
        steps=steps,
        time_fs=steps * timestep_fs,
        n_atoms=n,
        ensemble=ensemble,
        steps_per_second=steps / elapsed,
        initial_energy_ev=float(e[0]),
        final_energy_ev=float(e[-1]),
        drift_mev_per_atom=stats["drift_mev_per_atom"],
        max_deviation_mev_per_atom=stats["max_deviation_mev_per_atom"],
        energy_std_mev_per_atom=stats["energy_std_mev_per_atom"],
        mean_temperature_k=float(np.mean(temperatures)),
    )

"""The one MD protocol of gdlphys and its benchmarks: velocity set-up, timing, energy statistics.

Needs only numpy and ASE and imports nothing of gdlphys, so the peer benchmark scripts, which run
in another environment (``benchmarks/peers/mace_md.py``), load this very file by its path and
both codes are set up, timed and measured by the same lines.
"""

from __future__ import annotations

import time

import numpy as np

TRACE_POINTS = 2000  # samples of E(t) kept for a drift plot


def initialise_velocities(atoms, temperature_k: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_k``, no net momentum (nor rotation, for molecules)."""
    from ase.md import velocitydistribution
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29 deprecates the other name
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)


def energy_statistics(energies, timestep_fs: float, n_atoms: int) -> dict:
    """Total energy along a trajectory (one value per step, eV), per atom in meV: the end-minus-start
    change, the least-squares drift, the largest deviation from the start and the std."""
    e = np.asarray(energies, dtype=np.float64)
    t = np.arange(len(e)) * timestep_fs / 1000.0  # ps
    every = max(1, len(e) // TRACE_POINTS)
    return {
        "drift_mev_per_atom": 1000.0 * float(e[-1] - e[0]) / n_atoms,
        # slope of a least-squares line through E(t), times the run's length: the systematic part
        # of the change, where the end-minus-start difference also holds the last step's oscillation
        "fitted_drift_mev_per_atom": 1000.0 * float(np.polyfit(t, e, 1)[0] * t[-1]) / n_atoms if len(e) > 1 else 0.0,
        "max_deviation_mev_per_atom": 1000.0 * float(np.max(np.abs(e - e[0]))) / n_atoms,
        "energy_std_mev_per_atom": 1000.0 * float(np.std(e)) / n_atoms,
        "finite": bool(np.all(np.isfinite(e))),
        "trace_ps": t[::every].tolist(),  # E(t) - E(0), meV/atom, for the plot
        "trace_mev_per_atom": (1000.0 * (e[::every] - e[0]) / n_atoms).tolist(),
    }


def steps_per_second(atoms, timestep_fs: float, min_seconds: float, max_steps: int, warmup: int) -> dict:
    """VelocityVerlet in doubling chunks until ``min_seconds`` (or ``max_steps``) have passed; the
    first ``warmup`` steps (caches, compilation) are not timed."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dyn.run(warmup)
    steps, elapsed, chunk = 0, 0.0, 1
    while elapsed < min_seconds and steps < max_steps:
        chunk = min(chunk, max_steps - steps)
        start = time.perf_counter()
        dyn.run(chunk)
        elapsed += time.perf_counter() - start
        steps += chunk
        chunk *= 2
    return {"steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed}


def nve_drift(atoms, timestep_fs: float, steps: int) -> dict:
    """``steps`` of VelocityVerlet from the atoms' momenta, and :func:`energy_statistics` of them."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    energies: list[float] = []
    dyn.attach(lambda: energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()), interval=1)
    start = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - start
    return {"steps": steps, "time_ps": steps * timestep_fs / 1000.0, "steps_per_second": steps / seconds,
            **energy_statistics(energies, timestep_fs, len(atoms))}

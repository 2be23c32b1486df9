"""MD speed (and, on request, NVE energy drift) through mace-torch's ASE calculator.

Runs in the peer environment (never imports gdlphys). Same integrator, time step,
velocity initialisation and timing as the gdlphys side of the benchmark
(gdlphys/bench/md.py): ASE VelocityVerlet, Maxwell-Boltzmann momenta from
numpy's default_rng(seed), no net momentum (nor rotation for molecules).

    python mace_md.py --model mace.model --structures a.xyz b.xyz --result out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TRACE_POINTS = 2000  # samples of E(t) kept for the drift plot (as gdlphys/bench/md.py)


def initialise_velocities(atoms, temperature_k: float, seed: int) -> None:
    from ase.md import velocitydistribution
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    rng = np.random.default_rng(seed)
    if hasattr(velocitydistribution, "thermalize_momenta"):
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)


def steps_per_second(atoms, timestep_fs: float, min_seconds: float, max_steps: int, warmup: int) -> dict:
    """Run VelocityVerlet in growing chunks until ``min_seconds`` (or ``max_steps``) have passed."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dyn.run(warmup)  # first calls build caches; not timed
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
    """Total energy along NVE: start -> end change, largest deviation and std, per atom (meV)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()), interval=1)
    start = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - start
    e, n = np.asarray(energies), len(atoms)
    t = np.arange(len(e)) * timestep_fs / 1000.0  # ps
    every = max(1, len(e) // TRACE_POINTS)
    return {
        "steps": steps,
        "time_ps": steps * timestep_fs / 1000.0,
        "drift_mev_per_atom": 1000.0 * float(e[-1] - e[0]) / n,
        # slope of a least-squares line through E(t), times the run's length: the systematic part
        # of the change, where the end-minus-start difference also holds the last step's oscillation
        "fitted_drift_mev_per_atom": 1000.0 * float(np.polyfit(t, e, 1)[0] * t[-1]) / n,
        "max_deviation_mev_per_atom": 1000.0 * float(np.max(np.abs(e - e[0]))) / n,
        "energy_std_mev_per_atom": 1000.0 * float(np.std(e)) / n,
        "finite": bool(np.all(np.isfinite(e))),
        "steps_per_second": steps / seconds,
        "trace_ps": t[::every].tolist(),  # E(t) - E(0), meV/atom, for the plot
        "trace_mev_per_atom": (1000.0 * (e[::every] - e[0]) / n).tolist(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--structures", type=Path, nargs="+", required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--drift-steps", type=int, default=0, help="NVE steps on the first structure (0: none)")
    args = parser.parse_args()

    import ase.io
    import torch
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(args.model), device=args.device, default_dtype=args.dtype)
    model = calc.models[0]
    result = {
        "threads": torch.get_num_threads(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "r_max": float(model.r_max),
        "speed": [],
        "drift": None,
    }
    for path in args.structures:
        atoms = ase.io.read(path)
        atoms.calc = calc
        initialise_velocities(atoms, args.temperature, args.seed)
        speed = steps_per_second(atoms, args.timestep_fs, args.min_seconds, args.max_steps, args.warmup)
        speed.update(structure=str(path), n_atoms=len(atoms))
        result["speed"].append(speed)
        print(f"mace md: {len(atoms)} atoms, {speed['steps_per_second']:.2f} steps/s", file=sys.stderr, flush=True)
    if args.drift_steps > 0:
        atoms = ase.io.read(args.structures[0])
        atoms.calc = calc
        initialise_velocities(atoms, args.temperature, args.seed)
        result["drift"] = nve_drift(atoms, args.timestep_fs, args.drift_steps)
    args.result.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MD speed (and, on request, NVE energy drift) through mace-torch's ASE calculator.

Runs in the peer environment (never imports gdlphys). Same integrator, time step,
velocity initialisation, timing and statistics as the gdlphys side of the benchmark: the
very lines of gdlphys/nve.py, loaded by path.

    python mace_md.py --model mace.model --structures a.xyz b.xyz --result out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _protocol():
    """gdlphys/nve.py loaded by its path: the same velocity set-up, timing and statistics as the
    gdlphys side, without importing gdlphys (whose e3nn differs from MACE's)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "gdlphys" / "nve.py"
    spec = importlib.util.spec_from_file_location("gdlphys_nve_protocol", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nve = _protocol()


def initialise_velocities(atoms, temperature_k: float, seed: int) -> None:
    nve.initialise_velocities(atoms, temperature_k, np.random.default_rng(seed))


steps_per_second, nve_drift = nve.steps_per_second, nve.nve_drift


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--structures", type=Path, nargs="+", required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "default"],
                        help="default: MACECalculator's own choice (the model's dtype)")
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

    calc = MACECalculator(model_paths=str(args.model), device=args.device, default_dtype="" if args.dtype == "default" else args.dtype)
    model = calc.models[0]
    result = {
        "threads": torch.get_num_threads(),
        "dtype": str(calc.default_dtype),
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

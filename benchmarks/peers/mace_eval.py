"""Errors of a MACE model on labelled frames, through mace-torch's own ASE calculator.

Runs in the peer environment (never imports gdlphys). Frames: an extxyz file with
``REF_energy`` in ``atoms.info`` and ``REF_forces`` in ``atoms.arrays`` (eV, eV/Å).
Prints one JSON object (errors in eV, eV/Å, as ``gdlphys eval --json``) and writes it to ``--result``.

    python mace_eval.py --model mace_stagetwo.model --data test.xyz --result out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()

    import ase.io
    from mace.calculators import MACECalculator

    frames = ase.io.read(args.data, index=":")
    calc = MACECalculator(model_paths=str(args.model), device=args.device, default_dtype=args.dtype)
    e_err, e_err_atom, f_err = [], [], []
    start = time.perf_counter()
    for atoms in frames:
        ref_e, ref_f = float(atoms.info["REF_energy"]), np.asarray(atoms.arrays["REF_forces"])
        atoms.calc = calc
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        e_err.append(e - ref_e)
        e_err_atom.append((e - ref_e) / len(atoms))
        f_err.append((f - ref_f).ravel())
    seconds = time.perf_counter() - start
    e_err, e_err_atom, f_err = np.array(e_err), np.array(e_err_atom), np.concatenate(f_err)
    result = {
        "n_frames": len(frames),
        "energy_mae": float(np.mean(np.abs(e_err))),
        "energy_rmse": float(np.sqrt(np.mean(e_err**2))),
        "energy_per_atom_mae": float(np.mean(np.abs(e_err_atom))),
        "energy_per_atom_rmse": float(np.sqrt(np.mean(e_err_atom**2))),
        "forces_mae": float(np.mean(np.abs(f_err))),
        "forces_rmse": float(np.sqrt(np.mean(f_err**2))),
        "seconds": seconds,
        "model": str(args.model),
    }
    args.result.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

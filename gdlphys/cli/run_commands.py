"""``gdlphys eval`` and ``gdlphys md``: use a trained or shipped potential."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval", help="errors of a potential on labelled frames")
    p.add_argument("potential", help="shipped name, potential file or RUN_DIR")
    p.add_argument("data", help="labelled frames (HDF5)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (eV, eV/Å)")
    p.add_argument("--plot", metavar="FILE.png", help="write a parity plot")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when present)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None)
    p.set_defaults(handler=run_eval)

    p = sub.add_parser(
        "md", help="molecular dynamics with ASE's integrators",
        usage="gdlphys md (POTENTIAL | --calc PRESET) STRUCTURE [options]",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="[POTENTIAL] STRUCTURE",
        help="potential (shipped name, file or RUN_DIR; omit with --calc), then a structure: any file ase.io "
        "reads (first frame) or a SMILES string",
    )
    p.add_argument("--calc", metavar="PRESET", help="a calculator preset (ase_calculators/ name or YAML file) instead of POTENTIAL")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--dt", type=float, default=0.5, help="time step in fs (default 0.5)")
    p.add_argument("--temperature", type=float, default=300.0, help="initial / thermostat temperature in K")
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    p.add_argument("--traj", metavar="OUT", help="write an ASE trajectory (every --interval steps)")
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run_md_command)


def _device(name: str | None):
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def run_eval(args) -> int:
    import torch

    from gdlphys.models.files import load_potential
    from gdlphys.train.evaluate import evaluate_potential
    from gdlphys.train.plots import plot_parity

    if not Path(args.data).is_file():
        raise FileNotFoundError(f"no data file {args.data}")
    potential = load_potential(args.potential)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    result = evaluate_potential(potential, args.data, args.batch_size, _device(args.device), dtype)
    if args.plot:
        plot_parity(result.energy, result.forces, args.plot, title=f"{Path(args.data).name}")
    if args.json:
        print(json.dumps(result.metrics))
    else:
        print(format_metrics(result.metrics, args.data))
        if args.plot:
            print(f"parity plot: {args.plot}")
    return 0


def format_metrics(m: dict, label: str = "") -> str:
    rows = [
        ("energy", "meV", m["energy_mae"], m["energy_rmse"]),
        ("energy / atom", "meV/atom", m["energy_per_atom_mae"], m["energy_per_atom_rmse"]),
    ]
    if "forces_mae" in m:
        rows.append(("forces", "meV/Å", m["forces_mae"], m["forces_rmse"]))
    lines = [f"{label}: {m['n_frames']} frames" if label else f"{m['n_frames']} frames"]
    lines.append(f"  {'quantity':<14} {'unit':<9} {'MAE':>9} {'RMSE':>9}")
    for name, unit, mae, rmse in rows:
        lines.append(f"  {name:<14} {unit:<9} {1000 * mae:9.2f} {1000 * rmse:9.2f}")
    return "\n".join(lines)


def _read_structure(text: str):
    import ase.io

    if Path(text).is_file():
        return ase.io.read(text, index=0)
    from gdlphys.molecules import smiles_to_atoms

    if any(c in text for c in "/\\") or text.endswith((".xyz", ".traj", ".cif", ".pdb", ".extxyz", ".db")):
        raise FileNotFoundError(f"no structure file {text}")
    return smiles_to_atoms(text)[0]


def run_md_command(args) -> int:
    from gdlphys.calculator import GDLCalculator
    from gdlphys.md import run_md

    expected = 1 if args.calc else 2
    if len(args.inputs) != expected:
        raise ValueError(
            "give a structure after --calc PRESET" if args.calc else "give a POTENTIAL and a STRUCTURE (or --calc PRESET STRUCTURE)"
        )
    atoms = _read_structure(args.inputs[-1])
    if args.calc:
        from gdlphys.presets import load_calculator

        atoms.calc = load_calculator(args.calc)
    else:
        atoms.calc = GDLCalculator(args.inputs[0], device=_device(args.device), dtype=args.dtype)
    report = run_md(
        atoms, steps=args.steps, timestep_fs=args.dt, temperature_k=args.temperature, ensemble=args.ensemble,
        friction_per_fs=args.friction, trajectory=args.traj, interval=args.interval, seed=args.seed,
        progress=not args.json,
    )
    print(json.dumps(report.to_dict()) if args.json else report.describe())
    return 0

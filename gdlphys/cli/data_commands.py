"""``gdlphys data {label,convert,info}``: make and inspect HDF5 frame files."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    data = sub.add_parser("data", help="make and inspect HDF5 frame files")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = dsub.add_parser("label", help="SMILES -> RDKit conformer -> GFN2-xTB Langevin MD -> labelled frames")
    p.add_argument("smiles", nargs="+", help="one or more SMILES strings")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--frames", type=int, default=100, help="frames per molecule (default 100)")
    p.add_argument("--temperature", type=float, default=500.0, help="Langevin temperature in K (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stride", type=int, default=10, help="MD steps between sampled frames (default 10)")
    p.add_argument("--timestep", type=float, default=0.5, help="MD time step in fs (default 0.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_label)

    p = dsub.add_parser("convert", help="anything ase.io reads (extxyz, traj, db, ...) -> HDF5")
    p.add_argument("inputs", nargs="+", help="input files")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--energy-key", help="atoms.info key of the energy (default: ASE's calculator results)")
    p.add_argument("--forces-key", help="atoms.arrays key of the forces")
    p.add_argument("--stress-key", help="atoms.info key of the stress (6 Voigt or 9 values)")
    p.add_argument("--dipole-key", help="atoms.info key of the dipole")
    p.add_argument("--index", default=":", help="frames of each file, as ase.io.read's index (default all)")
    p.add_argument("--format", help="ase.io format when the file name does not tell")
    p.add_argument("--method", help="level of theory to record (e.g. PBE/def2-SVP)")
    p.set_defaults(handler=run_convert)

    p = dsub.add_parser("info", help="summary of an HDF5 frame file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_info)


def run_label(args) -> int:
    from gdlphys.data.label import label_smiles

    result = label_smiles(
        args.smiles, args.output, frames=args.frames, temperature=args.temperature, seed=args.seed,
        stride=args.stride, timestep_fs=args.timestep, progress=not args.quiet,
    )
    failures = getattr(result, "failures", None) or []
    for smiles, reason in failures:
        print(f"gdlphys: {smiles!r} not labelled: {reason}", file=sys.stderr)
    return 1 if failures else 0


def run_convert(args) -> int:
    from gdlphys.data.convert import convert

    n = convert(
        args.inputs, args.output, energy_key=args.energy_key, forces_key=args.forces_key,
        stress_key=args.stress_key, dipole_key=args.dipole_key, index=args.index, format=args.format,
        method=args.method,
    )
    print(f"wrote {n} frames to {args.output}", file=sys.stderr)
    return 0


def run_info(args) -> int:
    from gdlphys.data.summary import format_info, info

    summary = info(args.file)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_info(summary))
    return 0

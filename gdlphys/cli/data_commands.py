"""``gdlphys data {label,convert,info}``: make and inspect HDF5 frame files."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    data = sub.add_parser("data", help="make and inspect HDF5 frame files")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = dsub.add_parser(
        "label", help="SMILES -> RDKit conformers -> GFN2-xTB MD or normal-mode sampling -> labelled frames",
        description="Label molecules with GFN2-xTB (tblite): each molecule gets FRAMES frames per conformer, "
        "sampling and temperature. A killed run resumes where it stopped (same arguments).",
    )
    p.add_argument("smiles", nargs="*", help="SMILES strings (or --file)")
    p.add_argument("--file", help="a .smi file: one SMILES per line (first field); a bad line is reported and skipped")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--frames", type=int, default=100, help="frames per conformer, sampling and temperature (default 100)")
    p.add_argument("--temperature", default="500", help="temperature(s) in K, comma-separated: 300,600 (default 500)")
    p.add_argument(
        "--sampling", default="md",
        help="md (Langevin MD: STRIDE+1 xTB calls a frame), normal-modes (harmonic displacements around the xTB "
        "minimum: one call a frame after ~6N calls for the Hessian), or both: md,normal-modes (default md)",
    )
    p.add_argument("--conformers", type=int, default=1, help="RDKit conformers per molecule, each sampled (default 1)")
    p.add_argument("--workers", type=int, default=1, help="labelling processes, one thread each (default 1)")
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
    p.add_argument(
        "--skip-bad-frames", action="store_true",
        help="leave out frames whose positions, cell or labels hold a NaN or an infinity, naming each on stderr "
        "(default: such a frame is an error)",
    )
    p.set_defaults(handler=run_convert)

    p = dsub.add_parser("info", help="summary of an HDF5 frame file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_info)


def run_label(args) -> int:
    from gdlphys.data.label import label_smiles
    from gdlphys.molecules import read_smiles_file

    smiles = list(args.smiles) + (read_smiles_file(args.file) if args.file else [])
    if not smiles:
        print("gdlphys: give SMILES strings or --file molecules.smi", file=sys.stderr)
        return 2
    try:
        temperatures = [float(t) for t in args.temperature.split(",") if t.strip()]
    except ValueError:
        print(f"gdlphys: --temperature takes numbers in K, comma-separated, got {args.temperature!r}", file=sys.stderr)
        return 2
    result = label_smiles(
        smiles, args.output, frames=args.frames, temperature=temperatures, seed=args.seed,
        sampling=[s.strip() for s in args.sampling.split(",") if s.strip()], conformers=args.conformers,
        workers=args.workers, stride=args.stride, timestep_fs=args.timestep, progress=not args.quiet,
    )
    for failure in result.failures:
        print(f"gdlphys: {failure.smiles!r} not labelled: {failure.reason}", file=sys.stderr)
    cost = f", {result.calls_per_frame:.1f} xTB calls per frame" if result.calls_per_frame else ""
    print(f"gdlphys: {result.n_frames} frames of {result.n_molecules} molecules in {args.output}{cost}", file=sys.stderr)
    return 1 if result.failures else 0


def run_convert(args) -> int:
    from gdlphys.data.convert import convert
    from gdlphys.data.finite import NonFiniteError

    skipped = []

    def report(bad) -> None:
        skipped.append(bad)
        print(f"gdlphys: skipped {bad}", file=sys.stderr)

    try:
        n = convert(
            args.inputs, args.output, energy_key=args.energy_key, forces_key=args.forces_key,
            stress_key=args.stress_key, dipole_key=args.dipole_key, index=args.index, format=args.format,
            method=args.method, bad_frames="skip" if args.skip_bad_frames else "error", on_skip=report,
        )
    except NonFiniteError as err:
        raise ValueError(f"{err} (--skip-bad-frames leaves such frames out)") from err
    if skipped:
        print(f"gdlphys: skipped {len(skipped)} frame(s) holding NaN or infinite values", file=sys.stderr)
    print(f"wrote {n} frames to {args.output}", file=sys.stderr)
    return 0


def run_info(args) -> int:
    from gdlphys.data.summary import format_info, info

    summary = info(args.file)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_info(summary))
    return 0

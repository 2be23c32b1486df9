"""``gdlphys eval`` and ``gdlphys md``: use a trained or shipped potential."""

from __future__ import annotations

import json
from pathlib import Path

from gdlphys.cli.threads import set_threads


def register(sub) -> None:
    p = sub.add_parser("eval", help="errors of a potential on labelled frames")
    p.add_argument("potential", help="shipped name, potential file or RUN_DIR")
    p.add_argument("data", help="labelled frames (HDF5)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (eV, eV/Å)")
    p.add_argument("--plot", metavar="FILE.png", help="write a parity plot")
    p.add_argument("--batch-size", type=int, default=32, help="frames per forward pass (default 32)")
    p.add_argument("--processes", type=int, default=1, help="CPU processes of one thread each, each taking every "
                   "N-th frame; results in file order (default 1)")
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
    p.add_argument("--engine", choices=["ase", "openmm"], default="ase",
                   help="ase: ASE's VelocityVerlet/Langevin (default); openmm: OpenMM's VerletIntegrator/"
                   "LangevinMiddleIntegrator on its CPU platform through the openmm-ml plugin (pip install 'gdlphys[openmm]')")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    p.add_argument("--traj", metavar="OUT", help="write an ASE trajectory (every --interval steps)")
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: 1 below 300 atoms, else the usable cores no other process is busy on)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network: faster steps after a "
                   "one-off compile (minutes on CPU the first time); worth it for long runs")
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
    result = evaluate_potential(potential, args.data, args.batch_size, _device(args.device), dtype,
                                processes=args.processes, progress=not args.json)
    if args.plot:
        plot_parity(result.energy, result.forces, args.plot, title=f"{Path(args.data).name}", dipole=result.dipole)
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
    if "dipole_mae" in m:
        rows.append(("dipole", "me·Å", m["dipole_mae"], m["dipole_rmse"]))
        rows.append(("|dipole|", "mD", m["dipole_debye_norm_mae"], m["dipole_debye_norm_rmse"]))
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


def _openmm_md(args, atoms):
    """``gdlphys md --engine openmm``: the same protocol through OpenMM's integrators."""
    if args.traj or args.compile:
        raise ValueError("--traj and --compile belong to the ASE engine; from Python, OpenMM's reporters write trajectories")
    from gdlphys.openmm import run_openmm_md

    where = {"preset": args.calc} if args.calc else {"potential": args.inputs[0], "dtype": args.dtype, "device": _device(args.device)}
    return run_openmm_md(
        atoms, steps=args.steps, timestep_fs=args.dt, temperature_k=args.temperature, ensemble=args.ensemble,
        friction_per_fs=args.friction, seed=args.seed, progress=not args.json, threads=args.threads, **where,
    )


def run_md_command(args) -> int:
    expected = 1 if args.calc else 2
    if len(args.inputs) != expected:
        raise ValueError(
            "give a structure after --calc PRESET" if args.calc else "give a POTENTIAL and a STRUCTURE (or --calc PRESET STRUCTURE)"
        )
    atoms = _read_structure(args.inputs[-1])  # threads: the calculator's, chosen at each step (--threads: fixed)
    if args.engine == "openmm":
        report = _openmm_md(args, atoms)
    else:
        report = _ase_md(args, atoms)
    print(json.dumps(report.to_dict()) if args.json else report.describe())
    return 0


def _ase_md(args, atoms):
    from gdlphys.calculator import GDLCalculator
    from gdlphys.md import run_md

    if args.calc:
        from gdlphys.presets import load_calculator

        atoms.calc = load_calculator(args.calc)
        atoms.calc.threads = args.threads  # --threads holds inside each call too (None: the calculator's policy)
    else:
        atoms.calc = GDLCalculator(
            args.inputs[0], device=_device(args.device), dtype=args.dtype, compile=args.compile, threads=args.threads
        )
    return run_md(
        atoms, steps=args.steps, timestep_fs=args.dt, temperature_k=args.temperature, ensemble=args.ensemble,
        friction_per_fs=args.friction, trajectory=args.traj, interval=args.interval, seed=args.seed,
        progress=not args.json,
    )


def register_predict(sub) -> None:
    p = sub.add_parser("predict", help="properties of molecules from SMILES (relaxed geometry, dipole, vibrations, thermochemistry)")
    p.add_argument("smiles", nargs="*", help="SMILES strings")
    p.add_argument("--file", help="a file with one SMILES per line (e.g. RDKit's .smi files)")
    p.add_argument("--potential", default=None, help="shipped name, file or RUN_DIR, or a committee preset of "
                   "ase_calculators/ (adds a force_std column) (default: the broadest shipped potential)")
    p.add_argument("--conformers", type=int, default=5, help="RDKit conformers relaxed per molecule (default 5)")
    p.add_argument("--temperature", type=float, default=298.15, help="K, for H, S and G (default 298.15)")
    p.add_argument("--pressure", type=float, default=101325.0, help="Pa (default 101325)")
    p.add_argument("--fmax", type=float, default=0.005, help="relaxation threshold, eV/Å (default 0.005)")
    p.add_argument("--reference", choices=["xtb"], help="also compute everything with GFN2-xTB, side by side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=None,
                   help="molecules relaxed together in one batched graph (default: 16 on a GPU, 1 on a CPU)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list, one object per input, in input order")
    out.add_argument("--csv", metavar="OUT", help="write scalar properties as CSV")
    p.add_argument("--xyz", metavar="OUT", help="write the relaxed structures (extxyz)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1: molecules are small)")
    p.add_argument("--processes", type=int, default=None,
                   help="worker processes of one thread each, a molecule at a time (default: one per idle CPU core; "
                   "1 with --batch-size > 1, --threads or a GPU)")
    p.set_defaults(handler=run_predict)


def run_predict(args) -> int:
    from gdlphys.molecules import read_smiles_file
    from gdlphys.predict import predict

    smiles = list(args.smiles) + (read_smiles_file(args.file) if args.file else [])
    if not smiles:
        raise ValueError("give SMILES strings or --file")
    set_threads(args.threads, 0)
    results = predict(
        smiles, args.potential, conformers=args.conformers, temperature_k=args.temperature,
        pressure_pa=args.pressure, fmax=args.fmax, reference=args.reference, seed=args.seed,
        device=args.device, batch_size=args.batch_size, progress=not args.json, threads=args.threads,
        processes=args.processes,
    )
    if args.xyz:
        import ase.io

        from gdlphys.io_utils import atomic_write

        with atomic_write(args.xyz) as tmp:
            ase.io.write(tmp, [r.atoms() for r in results if r.error is None], format="extxyz")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    elif args.csv:
        import csv

        from gdlphys.io_utils import atomic_write

        columns = ["smiles", "energy", "dipole_debye", "zpe_ev", "enthalpy_ev", "entropy_ev_per_k", "gibbs_ev", "n_imaginary"]
        columns += ["force_std", "energy_std"] if any(r.force_std is not None for r in results) else []  # a committee's
        columns += ["error"]
        with atomic_write(args.csv) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for r in results:
                writer.writerow([getattr(r, c) for c in columns])
    else:
        for r in results:
            print(_describe_prediction(r, args.potential))
    return 1 if all(r.error for r in results) else 0


# The text report's rows: label, MoleculeResult field (or how to get it from one), format.
_PREDICT_ROWS = (
    ("energy (eV)", "energy", "{:.4f}"),
    ("dipole (D)", "dipole_debye", "{:.2f}"),
    ("ZPE (eV)", "zpe_ev", "{:.3f}"),
    ("H (eV)", "enthalpy_ev", "{:.4f}"),
    ("G (eV)", "gibbs_ev", "{:.4f}"),
    ("lowest mode (cm^-1)", lambda p: min(p.get("frequencies_cm1") or [0.0]), "{:.0f}"),
    ("imaginary modes", "n_imaginary", "{:d}"),
)


def _describe_prediction(r, potential: str | None) -> str:
    """One line per molecule; with ``--reference xtb``, a table of the potential beside GFN2-xTB."""
    if r.error:
        return f"{r.smiles}: error: {r.error}"
    spread = f", committee force spread {r.force_std:.3f} eV/Å" if r.force_std is not None else ""
    if r.reference is None:
        dip = f", dipole {r.dipole_debye:.2f} D" if r.dipole_debye is not None else ""
        return (
            f"{r.smiles}: E = {r.energy:.4f} eV{dip}, ZPE {r.zpe_ev:.3f} eV, H {r.enthalpy_ev:.4f} eV, "
            f"G {r.gibbs_ev:.4f} eV ({r.temperature_k:.0f} K); {len(r.frequencies_cm1)} modes, "
            f"lowest {min(r.frequencies_cm1, default=0):.0f} cm^-1, {r.n_imaginary} imaginary{spread}"
        )
    ref = r.reference
    mine = r.to_dict()
    from gdlphys.predict import default_potential

    name = Path(str(potential or default_potential())).name
    w = max(12, len(name))
    lines = [f"{r.smiles} (G at {r.temperature_k:.0f} K{spread}):", f"  {'':<20} {name:>{w}} {'GFN2-xTB':>12} {'difference':>11}"]
    if "error" in ref:
        lines.append(f"  GFN2-xTB failed: {ref['error']}")
        ref = {}
    for label, key, fmt in _PREDICT_ROWS:
        get = key if callable(key) else (lambda p, key=key: p.get(key))
        a, b = get(mine), get(ref) if ref else None
        text_a = fmt.format(a) if a is not None else "-"
        text_b = fmt.format(b) if b is not None else "-"
        diff = fmt.replace(":", ":+").format(a - b) if a is not None and b is not None else ""
        lines.append(f"  {label:<20} {text_a:>{w}} {text_b:>12} {diff:>11}")
    return "\n".join(lines)

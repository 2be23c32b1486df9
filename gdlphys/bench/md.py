"""MD speed through each code's ASE calculator (and, on request, NVE energy drift).

Same integrator (ASE VelocityVerlet), time step, starting structures and velocities for
both; the MACE side runs the same timing code in ``benchmarks/peers/mace_md.py``. Models:
the ones the accuracy benchmark trained into the same output folder when they are there,
otherwise freshly initialised ones of the same architectures (speed does not depend on the
weights; drift of an untrained potential says less).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from ase import Atoms

from gdlphys import nve
from gdlphys.bench.options import BenchOptions
from gdlphys.bench.peers import default_torch_threads, run_peer
from gdlphys.bench.report import Table, line_panels, trace_plot, write_report
from gdlphys.bench.systems import (
    aspirin_molecule,
    aspirin_split,
    busy_core,
    export_extxyz,
    molecule_box,
    subset_split,
)

GRIDS = [(1, 1, 1), (2, 2, 2), (4, 4, 6)]  # aspirin copies: 21, 168 and 2016 atoms
TIMESTEP_FS = 0.5
TEMPERATURE_K = 300.0
FULL = {"grids": GRIDS, "min_seconds": 10.0, "max_steps": 100000, "warmup": 1}
QUICK = {"grids": GRIDS[:2], "min_seconds": 0.5, "max_steps": 100, "warmup": 1}


def _log(message: str) -> None:
    print(f"bench md: {message}", file=sys.stderr, flush=True)


def initialise_velocities(atoms: Atoms, temperature_k: float, seed: int) -> None:
    """The protocol's velocities (gdlphys.nve) from default_rng(seed), as the peer script draws them."""
    nve.initialise_velocities(atoms, temperature_k, np.random.default_rng(seed))


steps_per_second = nve.steps_per_second
nve_drift = nve.nve_drift


def bench_models(options: BenchOptions, work: Path, peer_python: Path):
    """(gdlphys potential, MACE model path, description): trained by the accuracy benchmark, or fresh."""
    import torch

    from gdlphys.models.files import load_potential

    accuracy = options.out / "work" / "accuracy"
    trained_mace = accuracy / "mace-train.json"
    if (accuracy / "gdlphys" / "potential.pt").is_file() and trained_mace.is_file():
        mace_model = json.loads(trained_mace.read_text())["model"]
        if Path(mace_model).is_file():
            report = options.out / "accuracy.json"
            how = ""
            if report.is_file():
                document = json.loads(report.read_text())
                quick = " --quick" if document["options"].get("quick") else ""
                how = f" ({document['details']['budget_s'] / 60:.3g} min each{quick})"
            return load_potential(accuracy / "gdlphys" / "potential.pt"), mace_model, f"trained by the accuracy benchmark{how}"

    from gdlphys.data.datamodule import GraphDataset
    from gdlphys.models.config import ModelConfig
    from gdlphys.train.run import build_potential
    from gdlphys.train.statistics import compute_statistics

    split = subset_split(aspirin_split(), work / "data", 100, 10, 1)
    model = ModelConfig()
    frames = GraphDataset(split.train, model.cutoff, torch.float32)
    potential = build_potential(model, compute_statistics(frames[i] for i in range(len(frames))), options.seed, torch.float32)
    for name in ("train", "valid"):
        export_extxyz(getattr(split, name), work / f"{name}.xyz")
    _log("no trained models in this output folder: initialising both architectures (statistics of 100 frames, no training)")
    peer = run_peer(
        peer_python, "mace_train.py",
        ["--train", str(work / "train.xyz"), "--valid", str(work / "valid.xyz"), "--work-dir", str(work / "mace"),
         "--epochs", "0", "--device", options.device, "--seed", str(options.seed)],
        work / "mace-init.json", work / "mace-init.log", options.threads, "MACE initialisation",
    )
    return potential, peer["model"], "freshly initialised (untrained; reference energies and scale from 100 frames)"


def run(options: BenchOptions, peer_python: Path) -> list[Table]:
    import ase.io

    from gdlphys.calculator import GDLCalculator

    work = options.work_dir("md")
    setting = QUICK if options.quick else FULL
    potential, mace_model, origin = bench_models(options, work, peer_python)
    molecule = aspirin_molecule()
    paths = []
    for grid in setting["grids"]:
        atoms = molecule_box(molecule, grid)
        paths.append(work / f"aspirin-{len(atoms)}.xyz")
        ase.io.write(paths[-1], atoms, format="extxyz")
    drift_steps = round(options.drift_ps * 1000 / TIMESTEP_FS)
    if options.quick and drift_steps:
        drift_steps = min(drift_steps, 100)

    calc = GDLCalculator(potential, device=options.device, dtype="float32", threads=options.threads)
    ours = {"speed": [], "drift": None, "parameters": sum(p.numel() for p in potential.parameters()), "config": potential.config.to_dict()}
    for path in paths:
        atoms = ase.io.read(path)
        atoms.calc = calc
        initialise_velocities(atoms, TEMPERATURE_K, options.seed)
        speed = steps_per_second(atoms, TIMESTEP_FS, setting["min_seconds"], setting["max_steps"], setting["warmup"])
        speed.update(structure=str(path), n_atoms=len(atoms))
        ours["speed"].append(speed)
        _log(f"gdlphys: {len(atoms)} atoms, {speed['steps_per_second']:.2f} steps/s")
    if options.compile:
        ours["compiled"] = compiled_speeds(potential, paths, options, setting)
    if drift_steps:
        _log(f"gdlphys: NVE drift, {drift_steps} steps of {TIMESTEP_FS} fs ...")
        atoms = ase.io.read(paths[0])
        atoms.calc = calc
        initialise_velocities(atoms, TEMPERATURE_K, options.seed)
        ours["drift"] = nve_drift(atoms, TIMESTEP_FS, drift_steps)

    arguments = ["--model", mace_model, "--structures", *map(str, paths), "--device", options.device, "--timestep-fs", str(TIMESTEP_FS),
                 "--temperature", str(TEMPERATURE_K), "--seed", str(options.seed), "--min-seconds", str(setting["min_seconds"]),
                 "--max-steps", str(setting["max_steps"]), "--warmup", str(setting["warmup"]), "--drift-steps", str(drift_steps)]
    peer = run_peer(peer_python, "mace_md.py", arguments, work / "mace-md.json", work / "mace-md.log", options.threads, "MACE MD")

    tables = [speed_table(ours, peer, origin, options)]
    if options.at_defaults:
        ours["at_defaults"], peer["at_defaults"] = {}, {}
        for condition in ("quiet", "busy"):
            a, b = speeds_at_defaults(potential, mace_model, paths, setting, options, peer_python, work, condition)
            ours["at_defaults"][condition], peer["at_defaults"][condition] = a, b
        tables.append(defaults_table(ours["at_defaults"], peer["at_defaults"], origin, options))
    if drift_steps:
        tables.append(drift_table(ours, peer, drift_steps, origin))
        drift_plot(options.out / "nve-drift.png", ours["drift"], peer["drift"], drift_steps)
    series = {
        "gdlphys": [(s["n_atoms"], s["steps_per_second"]) for s in ours["speed"]],
        "MACE": [(s["n_atoms"], s["steps_per_second"]) for s in peer["speed"]],
    }
    if ours.get("compiled"):
        series["gdlphys compiled"] = [(s["n_atoms"], s["steps_per_second"]) for s in ours["compiled"]]
    line_panels(options.out / "md.png", f"ASE VelocityVerlet through each calculator, {options.threads} thread(s), {options.device}",
                [("MD speed", "atoms", "steps per second", series)])
    write_report(options.out, "md", tables, {"gdlphys": ours, "MACE": peer, "models": origin, "timestep_fs": TIMESTEP_FS}, options.to_dict())
    return tables


def timed_run(calc, path: Path, setting: dict, options: BenchOptions, check=None) -> dict:
    """Steps per second of MD on ``path`` through ``calc``, after a first call timed apart (a compile,
    or the first call's allocations); ``check(atoms, forces)`` may look at that call's forces and
    return more fields for the row."""
    import ase.io

    atoms = ase.io.read(path)
    atoms.calc = calc
    initialise_velocities(atoms, TEMPERATURE_K, options.seed)
    started = time.perf_counter()
    forces = atoms.get_forces()
    first_call = time.perf_counter() - started
    extra = check(atoms, forces) if check is not None else {}
    speed = steps_per_second(atoms, TIMESTEP_FS, setting["min_seconds"], setting["max_steps"], setting["warmup"])
    speed.update(structure=str(path), n_atoms=len(atoms), first_call_seconds=first_call, compiled=calc.compile, **extra)
    return speed


def compiled_speeds(potential, paths: list[Path], options: BenchOptions, setting: dict) -> list[dict]:
    """Steps per second through GDLCalculator(compile=True); the first call (the compile) is timed apart."""
    from gdlphys.calculator import GDLCalculator

    calc = GDLCalculator(potential, device=options.device, dtype="float32", compile=True, threads=options.threads)
    eager = GDLCalculator(potential, device=options.device, dtype="float32", threads=options.threads)

    def against_eager(atoms, forces) -> dict:
        difference = float(np.abs(forces - eager.get_forces(atoms)).max())
        if difference > 1e-3:
            raise RuntimeError(f"compiled and eager forces differ by {difference:.2e} eV/Å at {len(atoms)} atoms")
        return {"max_force_difference_to_eager": difference}

    speeds = []
    for path in paths:
        speed = timed_run(calc, path, setting, options, against_eager)
        speeds.append(speed)
        _log(f"gdlphys compiled: {speed['n_atoms']} atoms, {speed['steps_per_second']:.2f} steps/s (first call {speed['first_call_seconds']:.1f} s)")
    return speeds


def speeds_at_defaults(potential, mace_model: str, paths: list[Path], setting: dict, options: BenchOptions, peer_python: Path,
                       work: Path, condition: str) -> tuple[dict[str, list[dict]], dict]:
    """Both codes at their own defaults (GDLCalculator: threads and dtype None, eager and, with
    ``options.compile``, compiled; MACECalculator: its dtype and torch's default threads), on the
    machine as it is or with one core busy. gdlphys runs under the thread count torch gives a fresh
    script (this process has set ``--threads``; the calculator never takes more than its caller's)."""
    from gdlphys.calculator import GDLCalculator
    from gdlphys.threads import using_threads

    script_threads = default_torch_threads()
    with busy_core() if condition == "busy" else _nothing():
        ours: dict[str, list[dict]] = {}
        with using_threads(script_threads):
            kinds = {"eager": False, **({"compiled": True} if options.compile else {})}
            for kind, compiled in kinds.items():
                calc = GDLCalculator(potential, device=options.device, compile=compiled)
                ours[kind] = []
                for path in paths:
                    speed = timed_run(calc, path, setting, options)
                    speed.update(dtype=str(calc.dtype).removeprefix("torch."), script_threads=script_threads)
                    ours[kind].append(speed)
                    _log(f"gdlphys {kind} at its defaults ({condition}): {speed['n_atoms']} atoms, {speed['steps_per_second']:.2f} steps/s")
        arguments = ["--model", mace_model, "--structures", *map(str, paths), "--device", options.device, "--dtype", "default",
                     "--timestep-fs", str(TIMESTEP_FS), "--temperature", str(TEMPERATURE_K), "--seed", str(options.seed),
                     "--min-seconds", str(setting["min_seconds"]), "--max-steps", str(setting["max_steps"]), "--warmup", str(setting["warmup"])]
        peer = run_peer(peer_python, "mace_md.py", arguments, work / f"mace-md-defaults-{condition}.json",
                        work / f"mace-md-defaults-{condition}.log", None, f"MACE MD at its defaults ({condition})")
    return ours, peer


@contextmanager
def _nothing():
    yield


def defaults_table(ours: dict, peer: dict, origin: str, options: BenchOptions) -> Table:
    table = Table(f"MD speed, each code at its own defaults (threads, dtype), {options.device}: quiet and with one core busy", ["gdlphys", "MACE"])
    for kind in ours["quiet"]:
        for condition in ("quiet", "busy"):
            label = "" if kind == "eager" else f", gdlphys {kind}"
            for a, b in zip(ours[condition][kind], peer[condition]["speed"]):
                table.add(f"{a['n_atoms']} atoms, {condition}{label}", "steps/s", {"gdlphys": a["steps_per_second"], "MACE": b["steps_per_second"]},
                          better="higher")
    quiet, first = peer["quiet"], ours["quiet"]["eager"][0]
    table.notes += [
        (f"gdlphys: GDLCalculator(potential) (threads chosen per call, at most the {first['script_threads']} torch gives a fresh script; "
         f"{first['dtype']}); MACE: MACECalculator(model) ({quiet.get('dtype', '?')}, {quiet['threads']} torch threads, eager)"),
        "busy: a second process spins on one core (while True: pass) while both run",
        f"models: {origin}",
    ]
    if "compiled" in ours["quiet"]:
        seconds = ", ".join(f"{a['first_call_seconds']:.0f} s" for a in ours["quiet"]["compiled"])
        table.notes.append(f"gdlphys compiled: GDLCalculator(potential, compile=True); first calls (quiet) {seconds}, not in steps/s")
    return table


def speed_table(ours: dict, peer: dict, origin: str, options: BenchOptions) -> Table:
    table = Table(f"MD speed: ASE VelocityVerlet, {TIMESTEP_FS} fs, float32, {options.threads} thread(s), {options.device}", ["gdlphys", "MACE"])
    for a, b in zip(ours["speed"], peer["speed"]):
        kind = "molecule" if a["n_atoms"] <= 21 else "periodic box"
        table.add(f"{a['n_atoms']} atoms ({kind})", "steps/s", {"gdlphys": a["steps_per_second"], "MACE": b["steps_per_second"]}, better="higher")
    for a, b in zip(ours.get("compiled", []), peer["speed"]):
        table.add(f"{a['n_atoms']} atoms, gdlphys compiled", "steps/s", {"gdlphys": a["steps_per_second"], "MACE": b["steps_per_second"]}, better="higher")
    if ours.get("compiled"):
        first = ", ".join(f"{a['first_call_seconds']:.0f} s" for a in ours["compiled"])
        table.notes.append(f"gdlphys compiled: torch.compile(dynamic=True), first calls (compile) {first}, not in steps/s; MACE eager")
        if not all(a["compiled"] for a in ours["compiled"]):
            table.notes.append("torch.compile FAILED on this machine: the 'compiled' rows ran eagerly (see the warning)")
    table.add("parameters", "", {"gdlphys": ours["parameters"], "MACE": peer["parameters"]}, better="")
    c = ours["config"]
    table.notes += [
        f"gdlphys: {c['num_features']} channels, l_max {c['l_max']}, {c['num_layers']} layers, cutoff {c['cutoff']} Å",
        f"MACE: 32 channels (32x0e+32x1o), L 1, max_ell 3, correlation 3, 2 layers, cutoff {peer['r_max']} Å",
        f"models: {origin}",
        "MACE's calculator computes the stress on every call (its default); gdlphys's computes what ASE asks for",
    ]
    return table


def drift_plot(path: Path, ours: dict, peer: dict, steps: int) -> Path | None:
    """E(t) - E(0) of both codes' NVE runs on one axis (when both kept their traces)."""
    if "trace_ps" not in ours or "trace_ps" not in peer:
        return None
    traces = {"gdlphys": (ours["trace_ps"], ours["trace_mev_per_atom"]), "MACE": (peer["trace_ps"], peer["trace_mev_per_atom"])}
    title = f"NVE, aspirin, {steps} steps of {TIMESTEP_FS} fs from {TEMPERATURE_K:.0f} K, float32: total energy"
    return trace_plot(path, title, "E(t) - E(0) (meV/atom)", traces)


def drift_table(ours: dict, peer: dict, steps: int, origin: str) -> Table:
    a, b = ours["drift"], peer["drift"]
    table = Table(f"NVE energy drift: aspirin, {steps} steps of {TIMESTEP_FS} fs ({steps * TIMESTEP_FS / 1000:g} ps) from {TEMPERATURE_K:.0f} K, float32", ["gdlphys", "MACE"])
    if "fitted_drift_mev_per_atom" in a and "fitted_drift_mev_per_atom" in b:
        table.add("|drift|, least-squares line", "meV/atom", {"gdlphys": abs(a["fitted_drift_mev_per_atom"]), "MACE": abs(b["fitted_drift_mev_per_atom"])})
    table.add("|drift| start -> end", "meV/atom", {"gdlphys": abs(a["drift_mev_per_atom"]), "MACE": abs(b["drift_mev_per_atom"])})
    table.add("max |E(t) - E(0)|", "meV/atom", {"gdlphys": a["max_deviation_mev_per_atom"], "MACE": b["max_deviation_mev_per_atom"]})
    table.add("energy std", "meV/atom", {"gdlphys": a["energy_std_mev_per_atom"], "MACE": b["energy_std_mev_per_atom"]})
    table.notes.append(f"models: {origin}")
    if origin.startswith("fresh"):
        table.notes.append("untrained models: their forces differ in size, so this drift says little; run the accuracy benchmark first")
    return table

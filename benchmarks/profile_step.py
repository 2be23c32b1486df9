"""Where one MD step's time goes: a profile of ``GDLCalculator`` (energy and forces) by part of the network.

For each size (aspirin copies on a periodic grid: 21, 168 and 1,344 atoms by default) it times
whole steps without the profiler, then profiles a few with ``torch.profiler`` and attributes
every torch operator to the part of the network that ran it: forward operators by the module
they ran in (hooks open a ``record_function`` range per module), backward operators by the
forward operator they differentiate (autograd's sequence numbers). What ran in no torch
operator is Python: ASE, the calculator, autograd's engine, e3nn's glue.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_step.py --potential organic-xtb --json runs/profile.json

Prints a table per size (ms per step and share of the step) and, with ``--json``, writes all of it.
The profiler itself adds some microseconds per operator, so at the smallest size the shares of
the many small operators are overstated; the unprofiled ms per step is the true cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

PART_OF_MODULE = {  # module class -> part of the network (the innermost one counts)
    "SpeciesEmbedding": "embedding",
    "SphericalHarmonics": "spherical harmonics",
    "BesselBasis": "radial basis + cutoff",
    "PolynomialCutoff": "radial basis + cutoff",
    "FullyConnectedNet": "radial MLP",
    "TensorProduct": "edge tensor product",
    "EdgeTensorProduct": "edge tensor product",
    "SymmetricProduct": "product basis",
    "FullyConnectedTensorProduct": "self-connection",
    "Linear": "linear (e3nn)",
    "ProductInteraction": "message scatter + rest of interaction",
    "Interaction": "message scatter + rest of interaction",
    "ScalarReadout": "readout",
    "DipoleReadout": "dipole head",
    "SpeciesScaleShift": "scale, shift, energy sum",
    "EnergyModel": "model (other)",
}
PREFIX = "gdl::"


def add_ranges(potential: torch.nn.Module) -> list:
    """Forward hooks that open a record_function range named after each module's part."""
    handles = []
    for module in potential.modules():
        part = PART_OF_MODULE.get(type(module).__name__)
        if part is None:
            continue
        stack: list = []

        def enter(mod, args, part=part, stack=stack):
            context = torch.autograd.profiler.record_function(PREFIX + part)
            context.__enter__()
            stack.append(context)

        def leave(mod, args, output, stack=stack):
            stack.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def enclosing_part(event) -> str | None:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(PREFIX):
            return parent.name[len(PREFIX):]
        parent = parent.cpu_parent
    return None


def attribute(events, steps: int) -> dict[str, dict[str, float]]:
    """ms per step of forward and backward per part, from the profiler's events."""
    forward_part: dict[int, str] = {}
    table: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
    top_level = [e for e in events if e.cpu_parent is None and not e.name.startswith("ProfilerStep")]
    for event in events:  # forward operators: the part they ran in
        if event.name.startswith(PREFIX) or event.name.startswith("autograd::engine"):
            continue
        part = enclosing_part(event)
        if part is not None and event.sequence_nr >= 0:
            forward_part.setdefault(event.sequence_nr, part)
    for event in top_level:
        if event.name.startswith(PREFIX):  # a module range at top level: its operators' time, by inner part
            continue
        if event.name.startswith("autograd::engine::evaluate_function"):
            part = forward_part.get(event.sequence_nr, "backward (unattributed)")
            table[part]["backward"] += event.cpu_time_total / 1000
        elif event.name == PREFIX + "neighbour list":
            pass
        else:
            table["outside the network (graph, autograd setup, copies)"]["forward"] += event.cpu_time_total / 1000
    for event in events:  # operators inside module ranges: self time of the innermost range's operators
        if event.name.startswith(PREFIX) or event.cpu_parent is None:
            continue
        if event.cpu_parent.name.startswith(PREFIX):
            table[event.cpu_parent.name[len(PREFIX):]]["forward"] += event.cpu_time_total / 1000
    for event in events:
        if event.name == PREFIX + "neighbour list":
            table["neighbour list"]["forward"] += event.cpu_time_total / 1000
    return {part: {k: v / steps for k, v in times.items()} for part, times in table.items()}


def structure(n_grid: int):
    from gdlphys.bench.systems import aspirin_molecule, molecule_box

    return molecule_box(aspirin_molecule(), (n_grid, n_grid, n_grid))


def profile_size(calc, atoms, steps: int, warmup: int) -> dict:
    rng = np.random.default_rng(0)
    start = atoms.positions.copy()

    def step() -> None:  # a new geometry every call, as in MD (the calculator caches nothing then)
        atoms.positions = start + rng.normal(scale=0.01, size=start.shape)
        atoms.get_forces()

    atoms.calc = calc
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    wall_ms = (time.perf_counter() - started) / steps * 1000

    original_graph = calc.graph

    def graph_in_range(a):
        with torch.autograd.profiler.record_function(PREFIX + "neighbour list"):
            return original_graph(a)

    calc.graph = graph_in_range
    handles = add_ranges(calc.potential)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            profiled_start = time.perf_counter()
            for _ in range(steps):
                step()
            profiled_ms = (time.perf_counter() - profiled_start) / steps * 1000
    finally:
        for handle in handles:
            handle.remove()
        del calc.graph
    parts = attribute(prof.events(), steps)
    in_ops = sum(v["forward"] + v["backward"] for v in parts.values())
    parts["Python outside torch operators (ASE, calculator, autograd engine)"] = {"forward": max(profiled_ms - in_ops, 0.0), "backward": 0.0}
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {
        "n_atoms": len(atoms), "n_edges": int(calc.graph(atoms)["edge_index"].shape[1]),
        "ms_per_step": wall_ms, "ms_per_step_profiled": profiled_ms, "parts_ms": parts,
        "top_operators": [{"name": e.key, "self_ms_per_step": e.self_cpu_time_total / 1000 / steps, "calls_per_step": e.count / steps} for e in top],
    }


def print_table(result: dict) -> None:
    total = result["ms_per_step_profiled"]
    print(f"\n{result['n_atoms']} atoms, {result['n_edges']} edges: {result['ms_per_step']:.2f} ms per step "
          f"({result['ms_per_step_profiled']:.2f} profiled)")
    print("| part | forward ms | backward ms | share |\n| --- | --- | --- | --- |")
    rows = sorted(result["parts_ms"].items(), key=lambda kv: -(kv[1]["forward"] + kv[1]["backward"]))
    for part, t in rows:
        print(f"| {part} | {t['forward']:.2f} | {t['backward']:.2f} | {100 * (t['forward'] + t['backward']) / total:.0f} % |")
    print("top operators (self ms per step): " + ", ".join(f"{o['name']} {o['self_ms_per_step']:.2f} ({o['calls_per_step']:.0f}x)" for o in result["top_operators"][:6]))


def main(argv: list[str] | None = None) -> int:
    from gdlphys.calculator import GDLCalculator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potential", default="organic-xtb", help="shipped name, potential file or run folder")
    parser.add_argument("--grids", type=int, nargs="+", default=[1, 2, 4], help="aspirin copies per box edge (1: the molecule alone)")
    parser.add_argument("--steps", type=int, default=20, help="steps timed and profiled per size (fewer are used for large sizes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    calc = GDLCalculator(args.potential, dtype="float32", threads=args.threads)
    results = []
    for grid in args.grids:
        atoms = structure(grid)
        steps = max(3, args.steps // grid**2)
        result = profile_size(calc, atoms, steps, warmup=2)
        results.append(result)
        print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"potential": args.potential, "threads": args.threads, "torch": torch.__version__, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

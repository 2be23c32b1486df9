"""MD steps/s through GDLCalculator for each thread setting, on a quiet machine and with one core busy.

    python benchmarks/threads.py                          # organic-xtb, aspirin: 21, 168, 1344 atoms; ~4 min on 2 cores
    python benchmarks/threads.py --seconds 2 --paired-s 30 --json out.json

Settings: torch's default thread count (what a script got before the calculator had a policy),
1 and 2 threads, and the calculator's default (``threads=None``: :class:`gdlphys.threads.ThreadPolicy`
per call). "busy": a second process spins on one core (``while True: pass``, started and killed
here, and ending by itself after ``--spinner-s`` in any case). The cells of a row are measured
within a minute of each other, so ratios within a row are the figures to trust on a shared machine.
Then single calls at 21 to 336 atoms, two threads against one, alternating, filed by whether the
other processes were idle (the speed-up intra-op threads give when nobody else wants the cores),
and what switching threads around each call costs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager

import numpy as np
import torch
from ase import units
from ase.calculators.calculator import all_changes
from ase.md.verlet import VelocityVerlet

from gdlphys.bench.systems import aspirin_molecule, busy_core, molecule_box
from gdlphys.calculator import GDLCalculator
from gdlphys.models.files import load_potential
from gdlphys.nve import initialise_velocities
from gdlphys.threads import (
    CALL_SMALL_WORK_ATOMS,
    STRAY_CORES,
    IdleCores,
    ThreadPolicy,
    usable_cores,
    using_threads,
)

GRIDS = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]  # aspirin copies: 21, 168, 1344 atoms


def steps_per_second(atoms, min_seconds: float, min_steps: int = 2) -> float:
    """VelocityVerlet one step at a time until ``min_seconds`` and ``min_steps``; one untimed step first."""
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(1)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < min_seconds:
        dyn.run(1)
        steps += 1
    return steps / (time.perf_counter() - start)


def switch_cost_us(inner: int, outer: int, repeats: int = 2000) -> float:
    """Extra time of ``using_threads(inner)`` around a small torch op when the caller runs ``outer`` threads."""
    x = torch.ones(200_000)

    def timed(threads_outside: int) -> float:
        with using_threads(threads_outside):
            start = time.perf_counter()
            for _ in range(repeats):
                with using_threads(inner):
                    x.sum()
            return (time.perf_counter() - start) / repeats

    timed(outer), timed(inner)  # warm both pools
    return 1e6 * (timed(outer) - timed(inner))


def call_switch_cost_us(potential, molecule, pairs: int = 100) -> tuple[float, float]:
    """A one-thread calculator's call on ``molecule``, the caller at two threads (two switches a call)
    minus the caller at one (none), interleaved call by call: median difference and median call, in us."""
    calc = GDLCalculator(potential, device="cpu", threads=1)
    atoms = molecule.copy()
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(pairs + 5):
        for caller in (1, 2):
            with using_threads(caller):
                start = time.perf_counter()
                calc.calculate(atoms, ["energy", "forces"], all_changes)
                times[caller].append(time.perf_counter() - start)
    one, two = (np.array(times[c][5:]) for c in (1, 2))  # the first calls warm up
    return 1e6 * float(np.median(two - one)), 1e6 * float(np.median(one))


def paired_speedups(potential, molecule, seconds: float) -> list[dict]:
    """Two threads against one, call by call (alternating), at 21 to 336 atoms, for ``seconds``; each
    pair filed by the other processes' load in the second before it (idle: under STRAY_CORES)."""
    grids = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (4, 2, 2)]
    calcs = {n: GDLCalculator(potential, device="cpu", threads=n) for n in (1, 2)}
    watch = IdleCores()
    found = {grid: {"idle": [], "busy": []} for grid in grids}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for grid in grids:
            atoms = molecule_box(molecule, grid)
            call = {}
            for n in (1, 2):
                start = time.perf_counter()
                calcs[n].calculate(atoms, ["energy", "forces"], all_changes)
                call[n] = time.perf_counter() - start
            found[grid]["idle" if watch.others() < STRAY_CORES else "busy"].append(call[1] / call[2])
    return [{"atoms": len(molecule) * int(np.prod(grid)), **{f"{k} pairs": len(v) for k, v in ratios.items()},
             **{f"{k} speed-up": float(np.median(v)) if v else None for k, v in ratios.items()}} for grid, ratios in found.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potential", default="organic-xtb")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per cell (at least 2 steps)")
    parser.add_argument("--paired-s", type=float, default=60.0, help="seconds of paired 1- and 2-thread calls")
    parser.add_argument("--spinner-s", type=float, default=300.0, help="a spinner ends by itself after this")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    torch_default = torch.get_num_threads()  # before anything of ours runs: what a plain script gets
    begin = time.perf_counter()
    load_before = os.getloadavg()

    counts = sorted({1, 2, torch_default})  # fixed thread counts; torch's default is one of them on 2 cores
    rows = []
    molecule = aspirin_molecule()
    potential = load_potential(args.potential)
    for grid in GRIDS:
        atoms = molecule_box(molecule, grid)
        for condition in ("quiet", "busy"):
            with busy_core(args.spinner_s) if condition == "busy" else _nothing():
                policy = ThreadPolicy(CALL_SMALL_WORK_ATOMS)  # the calculator's own
                row = {"atoms": len(atoms), "condition": condition, "policy_threads": policy(len(atoms)),
                       "others_cores": policy.idle_cores.others(), "steps_per_s": {}}
                for threads in [*counts, None]:
                    atoms.calc = GDLCalculator(potential, device="cpu", threads=threads)
                    initialise_velocities(atoms, 300.0, np.random.default_rng(0))
                    row["steps_per_s"][str(threads or "policy")] = speed = steps_per_second(atoms, args.seconds)
                    print(f"{len(atoms):5d} atoms  {condition:5s}  threads {threads or 'policy'!s:7s} {speed:8.3f} steps/s", flush=True)
            rows.append(row)

    switching = {"1 inside, caller 2 (us)": switch_cost_us(1, 2), "2 inside, caller 1 (us)": switch_cost_us(2, 1)}
    switching["21-atom call, threads=1: caller 2 minus caller 1 (us)"], switching["21-atom call (us)"] = call_switch_cost_us(potential, molecule)
    paired = paired_speedups(potential, molecule, args.paired_s)
    elapsed = time.perf_counter() - begin
    machine = {"cores_usable": usable_cores(), "torch_default_threads": torch_default,
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "seconds": elapsed}

    print(f"\n{args.potential}, {potential.dtype}, VelocityVerlet 0.5 fs, MD steps/s; {machine}")
    names = [f"{n} (torch default)" if n == torch_default else str(n) for n in counts]
    print("| atoms | | others' load (cores) | " + " | ".join(names) + " | policy (threads chosen) | policy / torch default |")
    print("| --- " * (5 + len(counts)) + "|")
    for row in rows:
        speeds = row["steps_per_s"]
        cells = [f"{speeds[str(n)]:.3g}" for n in counts]
        print(f"| {row['atoms']} | {row['condition']} | {row['others_cores']:.1f} | " + " | ".join(cells)
              + f" | {speeds['policy']:.3g} ({row['policy_threads']}) | {speeds['policy'] / speeds[str(torch_default)]:.2g} |")
    print("\nsingle calls, two threads against one, alternating; median speed-up when the others were idle / busy")
    print("| atoms | idle: pairs | idle: 1 thread / 2 threads time | busy: pairs | busy: 1 thread / 2 threads time |")
    print("| --- | --- | --- | --- | --- |")
    for p in paired:
        cells = [f"{p[f'{k} pairs']} | " + (f"{p[f'{k} speed-up']:.2f}" if p[f"{k} speed-up"] else "-") for k in ("idle", "busy")]
        print(f"| {p['atoms']} | " + " | ".join(cells) + " |")
    print("switching threads around a call:", {k: round(v, 2) for k, v in switching.items()})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "paired": paired, "switching_us": switching, "machine": machine, "potential": args.potential}, handle, indent=1)


@contextmanager
def _nothing():
    yield


if __name__ == "__main__":
    main()

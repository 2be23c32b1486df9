"""Long MD through the calculator: is memory flat? Prints resident memory (RSS) along the run.

    python benchmarks/md_memory.py --steps 20000                # untrained potential, ethanol-xtb sizes
    python benchmarks/md_memory.py --potential ethanol-xtb --steps 100000

RSS comes from /proc/self/statm (Linux). Every step goes through GDLCalculator and ASE's
VelocityVerlet, like ``gdlphys md``; a growing RSS would mean something is kept per step.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.io import read
from ase.md.verlet import VelocityVerlet

from gdlphys.calculator import GDLCalculator
from gdlphys.md import initialise_velocities
from gdlphys.models.config import ModelConfig
from gdlphys.models.potential import Potential

ROOT = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def untrained_ethanol_potential() -> Potential:
    """The architecture of the shipped ethanol-xtb potential with seeded random weights."""
    config = ModelConfig(cutoff=4.5, num_features=32, l_max=2, num_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Potential(config, [1, 6, 8], [-10.7, -48.9, -160.5], 8.0, scale=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--potential", default=None, help="shipped name or file (default: untrained, same size)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--report-every", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    atoms = read(ROOT / "datasets" / "ethanol-xtb" / "ethanol.xyz")
    potential = untrained_ethanol_potential() if args.potential is None else args.potential
    atoms.calc = GDLCalculator(potential, device="cpu", dtype=args.dtype, threads=args.threads)
    initialise_velocities(atoms, 300.0, np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    atoms.get_forces()
    dyn.run(200)  # warm-up: allocator pools, autograd caches
    start_rss, start = rss_mib(), time.perf_counter()
    print(f"start: RSS {start_rss:.1f} MiB after 200 warm-up steps ({len(atoms)} atoms, {args.dtype})", flush=True)

    def report() -> None:
        if dyn.nsteps and dyn.nsteps % args.report_every == 0:
            rate = dyn.nsteps / (time.perf_counter() - start)
            epot = atoms.get_potential_energy()
            print(f"step {dyn.nsteps:>7}: RSS {rss_mib():.1f} MiB, {rate:.0f} steps/s, E_pot {epot:.4f} eV", flush=True)

    dyn.nsteps = 0
    dyn.attach(report, interval=1)
    dyn.run(args.steps)
    end_rss = rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"end: RSS {end_rss:.1f} MiB after {args.steps} steps (change {end_rss - start_rss:+.1f} MiB, "
        f"peak {peak:.1f} MiB), {args.steps / (time.perf_counter() - start):.0f} steps/s"
    )


if __name__ == "__main__":
    main()

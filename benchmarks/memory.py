"""Peak memory of one energy-and-forces call against the number of atoms, edge chunks on and off.

Random H/C/O atoms at water's atom density in a periodic cube (``gdlphys.bench.systems.random_atoms``),
one ``GDLCalculator(potential).get_forces`` call per size and setting, each in a fresh
subprocess, so each peak RSS (``ru_maxrss``, which includes the imports and the loaded
potential) belongs to that size alone. Chunks on: ``edge_chunk=None`` (automatic); off:
``edge_chunk=0``, run only up to ``--max-unchunked`` atoms (above, it would not fit). Where
both ran, the largest force difference between them. Below 200,000 edges (~4,000 atoms) the
automatic setting does not chunk: ``--edge-chunk 8192`` chunks the small sizes too. Prints a JSON table and writes it.

    OMP_NUM_THREADS=1 python benchmarks/memory.py                       # 2,000 ... 100,000 atoms
    OMP_NUM_THREADS=1 python benchmarks/memory.py --sizes 500 1000 --edge-chunk 4096 --out memory.json

``--mmap-threshold BYTES`` sets glibc's MALLOC_MMAP_THRESHOLD_ in the children: large blocks then go
back to the system when freed, which shows how much of a peak is freed memory the allocator kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SYMBOLS = [1, 6, 8]  # H, C, O


def child(n_atoms: int, edge_chunk: int, potential: str, seed: int, forces_path: str) -> dict:
    """One call in this process (the child): its row of the table."""
    import resource
    import time

    import torch
    from ase import Atoms

    from gdlphys.bench.systems import random_atoms
    from gdlphys.calculator import GDLCalculator

    positions, cell = random_atoms(n_atoms, seed)
    numbers = np.random.default_rng(seed).choice(SYMBOLS, size=n_atoms)
    atoms = Atoms(numbers, positions, cell=cell, pbc=True)
    calc = GDLCalculator(potential, device="cpu", edge_chunk=None if edge_chunk < 0 else edge_chunk,
                         threads=torch.get_num_threads())
    n_edges = int(calc.graph(atoms)["edge_index"].shape[1])
    start = time.perf_counter()
    forces = calc.get_forces(atoms)
    seconds = time.perf_counter() - start
    np.save(forces_path, forces)
    return {
        "atoms": n_atoms, "edges": n_edges, "edge_chunk": "auto" if edge_chunk < 0 else edge_chunk,
        "seconds": round(seconds, 2), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def run_child(n_atoms: int, edge_chunk: int, args, folder: Path) -> tuple[dict, np.ndarray | None]:
    forces_path = folder / f"forces-{n_atoms}-{edge_chunk}.npy"
    env = dict(os.environ)
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    command = [sys.executable, __file__, "--child", str(n_atoms), str(edge_chunk), args.potential, str(args.seed), str(forces_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:  # out of memory, most likely: a row that says so
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return {"atoms": n_atoms, "edge_chunk": "auto" if edge_chunk < 0 else edge_chunk, "error": tail[0]}, None
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(forces_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 50000, 100000])
    parser.add_argument("--max-unchunked", type=int, default=20000, help="run edge_chunk=0 only up to this many atoms")
    parser.add_argument("--edge-chunk", type=int, default=-1, help="the chunked runs' edge_chunk (default: automatic)")
    parser.add_argument("--potential", default="organic-xtb")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mmap-threshold", type=int, default=0, help="MALLOC_MMAP_THRESHOLD_ for the children (0: glibc's own)")
    parser.add_argument("--out", type=Path, default=Path("memory.json"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n_atoms, edge_chunk, potential, seed, forces_path = args.child
        print(json.dumps(child(int(n_atoms), int(edge_chunk), potential, int(seed), forces_path)))
        return

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n_atoms in args.sizes:
            chunked, forces_chunked = run_child(n_atoms, args.edge_chunk, args, Path(folder))
            rows.append(chunked)
            print(json.dumps(chunked), file=sys.stderr, flush=True)
            if n_atoms > args.max_unchunked:
                continue
            plain, forces_plain = run_child(n_atoms, 0, args, Path(folder))
            if forces_chunked is not None and forces_plain is not None:
                # random atoms overlap, so forces reach 1e8 eV/Å: float32 agreement is relative to the largest
                plain["max_force_difference_ev_a"] = float(np.abs(forces_chunked - forces_plain).max())
                plain["max_force_ev_a"] = float(np.abs(forces_plain).max())
                plain["relative_force_difference"] = plain["max_force_difference_ev_a"] / max(plain["max_force_ev_a"], 1e-30)
            rows.append(plain)
            print(json.dumps(plain), file=sys.stderr, flush=True)
    report = {"potential": args.potential, "threads": os.environ.get("OMP_NUM_THREADS"),
              "mmap_threshold": args.mmap_threshold or None, "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

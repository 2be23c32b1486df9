"""Neighbour-list timings of ASE, vesin and matscipy on the structures the gdlphys side made.

Runs in the peer environment (never imports gdlphys). ``--structures`` is an .npz with
``positions_<N>`` [N, 3] and ``cell_<N>`` [3, 3] (Å) for each size N. Every code lists
all directed pairs closer than the cutoff (full list, with periodic shifts). A code whose
one call took longer than ``--max-seconds`` is skipped at the larger sizes.

    python neighbours.py --structures atoms.npz --cutoff 5 --result out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def ase_pairs(positions, cell, pbc, cutoff):
    from ase.neighborlist import primitive_neighbor_list

    i, _, _ = primitive_neighbor_list("ijS", pbc, cell, positions, cutoff, self_interaction=False)
    return len(i)


def vesin_pairs(positions, cell, pbc, cutoff):
    from vesin import NeighborList

    i, _, _ = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=positions, box=cell, periodic=bool(pbc[0]), quantities="ijS"
    )
    return len(i)


def matscipy_pairs(positions, cell, pbc, cutoff):
    from matscipy.neighbours import neighbour_list

    i, _, _ = neighbour_list("ijS", positions=positions, cell=cell, pbc=pbc, cutoff=cutoff)
    return len(i)


CODES = {"ase": ase_pairs, "vesin": vesin_pairs, "matscipy": matscipy_pairs}


def best_time(function, repeats: int, *args) -> tuple[float, int]:
    """Fastest of ``repeats`` calls, and the pair count."""
    times, pairs = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        pairs = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=Path, required=True)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--codes", nargs="+", default=list(CODES), choices=list(CODES))
    parser.add_argument("--max-seconds", type=float, default=20.0, help="skip larger sizes once one call took longer")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import ase
    import matscipy
    import vesin

    data = np.load(args.structures)
    sizes = sorted(int(k.split("_")[1]) for k in data.files if k.startswith("positions_"))
    versions = {"ase": ase.__version__, "vesin": vesin.__version__, "matscipy": matscipy.__version__}
    rows = []
    for periodic in (True, False):
        too_slow: set[str] = set()
        pbc = np.array([periodic] * 3)
        for code in args.codes:  # warm-up: imports and first-call costs stay out of the timings
            n0 = sizes[0]
            CODES[code](data[f"positions_{n0}"], data[f"cell_{n0}"], pbc, args.cutoff)
        for n in sizes:
            positions, cell = np.ascontiguousarray(data[f"positions_{n}"]), np.ascontiguousarray(data[f"cell_{n}"])
            for code in args.codes:
                if code in too_slow:
                    rows.append({"code": code, "n_atoms": n, "periodic": periodic, "seconds": None, "pairs": None})
                    continue
                repeats = args.repeats if n <= 10000 else 1
                seconds, pairs = best_time(CODES[code], repeats, positions, cell, pbc, args.cutoff)
                rows.append({"code": code, "n_atoms": n, "periodic": periodic, "seconds": seconds, "pairs": int(pairs)})
                print(f"neighbours: {code} {n} atoms {'periodic' if periodic else 'open'}: {seconds:.4f} s", file=sys.stderr, flush=True)
                if seconds > args.max_seconds:
                    too_slow.add(code)
    result = {"versions": versions, "rows": rows}
    args.result.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

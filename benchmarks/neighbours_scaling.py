"""Neighbour-list time against the number of atoms: gdlphys.graph.radius_graph beside vesin and
ASE's primitive_neighbor_list (each when importable), periodic and not.

Random atoms at water density (0.1 atoms/Å^3) in a cubic box, cutoff 5 Å, float64. Prints the
fastest of a few calls (one call above 10,000 atoms) and, per code, time(8N) / time(N) for the
sizes eight times apart (8 for linear scaling). `gdlphys bench` holds the full harness.

    OMP_NUM_THREADS=1 python benchmarks/neighbours_scaling.py [--sizes 125 1000 8000 64000 100000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from gdlphys.graph import radius_graph

CUTOFF = 5.0
DENSITY = 0.1  # atoms / Å^3, about liquid water's


def random_atoms(n_atoms: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions [n, 3] uniform in a cube holding n atoms at DENSITY, and that cube's cell."""
    side = (n_atoms / DENSITY) ** (1.0 / 3.0)
    return np.random.default_rng(seed).uniform(0.0, side, size=(n_atoms, 3)), np.eye(3) * side


def gdlphys_pairs(positions: np.ndarray, cell: np.ndarray, periodic: bool) -> int:
    pbc = torch.full((1, 3), periodic)
    edge_index, _ = radius_graph(torch.from_numpy(positions), CUTOFF, cell=torch.from_numpy(cell)[None], pbc=pbc)
    return edge_index.shape[1]


def vesin_pairs(positions: np.ndarray, cell: np.ndarray, periodic: bool) -> int:
    from vesin import NeighborList

    i, _, _ = NeighborList(cutoff=CUTOFF, full_list=True).compute(positions, cell, periodic, "ijS")
    return len(i)


def ase_pairs(positions: np.ndarray, cell: np.ndarray, periodic: bool) -> int:
    from ase.neighborlist import primitive_neighbor_list

    return len(primitive_neighbor_list("i", [periodic] * 3, cell, positions, CUTOFF, self_interaction=False))


def available_codes() -> dict[str, Callable[[np.ndarray, np.ndarray, bool], int]]:
    codes = {"gdlphys": gdlphys_pairs}
    for name, function, module in [("vesin", vesin_pairs, "vesin"), ("ase", ase_pairs, "ase.neighborlist")]:
        try:
            __import__(module)
        except ImportError:
            print(f"{name}: not importable, skipped")
            continue
        codes[name] = function
    return codes


def fastest(function: Callable[..., int], repeats: int, *args) -> tuple[float, int]:
    best, pairs = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        pairs = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[125, 1000, 8000, 64000, 100000])
    parser.add_argument("--max-seconds", type=float, default=10.0, help="skip a code at larger sizes after this slow a call")
    args = parser.parse_args()
    codes = available_codes()
    print(f"cutoff {CUTOFF} Å, {DENSITY} atoms/Å^3, float64, torch threads {torch.get_num_threads()}")
    for periodic in (True, False):
        print(f"\n{'periodic' if periodic else 'open'} (seconds; pairs)")
        print(f"{'atoms':>8} " + " ".join(f"{name:>18}" for name in codes))
        for name, function in codes.items():  # warm-up: imports and first-call costs
            function(*random_atoms(100), periodic)
        seconds: dict[str, dict[int, float]] = {name: {} for name in codes}
        for n in args.sizes:
            positions, cell = random_atoms(n)
            cells = []
            for name, function in codes.items():
                if any(t > args.max_seconds for t in seconds[name].values()):
                    cells.append(f"{'-':>18}")
                    continue
                t, pairs = fastest(function, 3 if n <= 10000 else 1, positions, cell, periodic)
                seconds[name][n] = t
                cells.append(f"{t:>9.4f} {pairs:>8}")
            print(f"{n:>8} " + " ".join(cells), flush=True)
        for name, times in seconds.items():
            ratios = [f"{n}->{8 * n}: {times[8 * n] / times[n]:.1f}" for n in times if 8 * n in times]
            if ratios:
                print(f"  {name} time(8N)/time(N): " + ", ".join(ratios))


if __name__ == "__main__":
    main()

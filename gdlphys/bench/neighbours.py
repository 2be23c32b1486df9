"""Neighbour-list time from 100 to 100,000 atoms: gdlphys.graph.radius_graph beside ASE's
primitive_neighbor_list, vesin and matscipy, on the same random atoms at water density."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from gdlphys.bench.options import BenchOptions
from gdlphys.bench.peers import PeerError, run_peer
from gdlphys.bench.report import Table, line_panels, write_report
from gdlphys.bench.systems import random_atoms

CUTOFF = 5.0
FULL = {"sizes": [100, 800, 6400, 51200, 100000], "max_seconds": 20.0}
QUICK = {"sizes": [100, 800, 6400], "max_seconds": 2.0}
CODES = ["gdlphys", "ASE", "vesin", "matscipy"]
_PEER_NAMES = {"ase": "ASE", "vesin": "vesin", "matscipy": "matscipy"}


def _log(message: str) -> None:
    print(f"bench neighbours: {message}", file=sys.stderr, flush=True)


def time_gdlphys(positions: np.ndarray, cell: np.ndarray, periodic: bool, repeats: int) -> tuple[float, int]:
    """Fastest of ``repeats`` calls of the public radius_graph on float64 tensors."""
    import torch

    from gdlphys.graph import radius_graph

    pos = torch.from_numpy(positions)
    extra = {"cell": torch.from_numpy(cell)[None], "pbc": torch.ones(1, 3, dtype=torch.bool)} if periodic else {}
    best, pairs = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        edge_index, _shifts = radius_graph(pos, CUTOFF, **extra)
        best = min(best, time.perf_counter() - start)
        pairs = int(edge_index.shape[1])
    return best, pairs


def measure_gdlphys(structures: dict[int, tuple[np.ndarray, np.ndarray]], max_seconds: float, repeats: int = 3) -> list[dict]:
    rows = []
    for periodic in (True, False):
        first = min(structures)
        time_gdlphys(*structures[first], periodic, 1)  # warm-up: imports and first-call costs stay out
        too_slow = False
        for n, (positions, cell) in sorted(structures.items()):
            if too_slow:
                rows.append({"code": "gdlphys", "n_atoms": n, "periodic": periodic, "seconds": None, "pairs": None})
                continue
            seconds, pairs = time_gdlphys(positions, cell, periodic, repeats if n <= 10000 else 1)
            rows.append({"code": "gdlphys", "n_atoms": n, "periodic": periodic, "seconds": seconds, "pairs": pairs})
            _log(f"gdlphys {n} atoms {'periodic' if periodic else 'open'}: {seconds:.4f} s")
            too_slow = seconds > max_seconds
    return rows


def run(options: BenchOptions, peer_python: Path) -> list[Table]:
    work = options.work_dir("neighbours")
    setting = QUICK if options.quick else FULL
    structures = {n: random_atoms(n, options.seed) for n in setting["sizes"]}
    archive = work / "atoms.npz"
    np.savez(archive, **{f"positions_{n}": p for n, (p, _) in structures.items()}, **{f"cell_{n}": c for n, (_, c) in structures.items()})
    _log(f"random atoms at water density, cutoff {CUTOFF} Å, sizes {setting['sizes']}")

    rows = measure_gdlphys(structures, setting["max_seconds"])
    peer = run_peer(
        peer_python, "neighbours.py",
        ["--structures", str(archive), "--cutoff", str(CUTOFF), "--max-seconds", str(setting["max_seconds"])],
        work / "peers.json", work / "peers.log", options.threads, "peer neighbour lists",
    )
    rows += [{**r, "code": _PEER_NAMES[r["code"]]} for r in peer["rows"]]
    check_pair_counts(rows)
    tables = [time_table(rows, setting["sizes"]), scaling_table(rows, setting["sizes"])]
    panels = []
    for periodic in (True, False):
        series = defaultdict(list)
        for r in rows:
            if r["periodic"] == periodic:
                series[r["code"]].append((r["n_atoms"], r["seconds"]))
        panels.append(("periodic" if periodic else "non-periodic", "atoms", "seconds", dict(series)))
    line_panels(options.out / "neighbours.png", f"neighbour list, cutoff {CUTOFF} Å, water density", panels)
    write_report(options.out, "neighbours", tables, {"rows": rows, "versions": peer["versions"], "cutoff": CUTOFF}, options.to_dict())
    return tables


def check_pair_counts(rows: list[dict]) -> None:
    """Every code must find the same pairs; a mismatch means a wrong list, not a slow one."""
    counts = defaultdict(dict)
    for r in rows:
        if r["pairs"] is not None:
            counts[(r["n_atoms"], r["periodic"])][r["code"]] = r["pairs"]
    for (n, periodic), by_code in counts.items():
        if len(set(by_code.values())) > 1:
            raise PeerError(f"neighbour lists disagree at {n} atoms ({'periodic' if periodic else 'open'}): {by_code}")


def _seconds(rows: list[dict], code: str, n: int, periodic: bool) -> float | None:
    return next((r["seconds"] for r in rows if r["code"] == code and r["n_atoms"] == n and r["periodic"] == periodic), None)


def time_table(rows: list[dict], sizes: list[int]) -> Table:
    table = Table(f"neighbour list time (best of 3, one call at > 10,000 atoms), cutoff {CUTOFF} Å", CODES, ratio=("gdlphys", "vesin"))
    for periodic in (True, False):
        for n in sizes:
            table.add(f"{n} atoms, {'periodic' if periodic else 'open'}", "ms",
                      {c: (1000 * s if (s := _seconds(rows, c, n, periodic)) is not None else None) for c in CODES})
    table.notes.append("'-': skipped after a call took longer than the limit at a smaller size")
    return table


def scaling_table(rows: list[dict], sizes: list[int]) -> Table:
    table = Table("neighbour list scaling: time(8N) / time(N) (8 for linear scaling)", CODES, ratio=None)
    for periodic in (True, False):
        for n in sizes:
            if 8 * n not in sizes:
                continue
            values = {}
            for c in CODES:
                small, large = _seconds(rows, c, n, periodic), _seconds(rows, c, 8 * n, periodic)
                values[c] = large / small if small and large else None
            table.add(f"time({8 * n}) / time({n}), {'periodic' if periodic else 'open'}", "", values, better="")
    return table

"""Runs the chosen benchmarks one after the other and prints their tables."""

from __future__ import annotations

import sys
import time
from importlib import import_module

from gdlphys.bench.options import BENCHMARKS, BenchOptions
from gdlphys.bench.peers import find_peer_python
from gdlphys.bench.report import Table

# benchmark name -> module with run(options, peer_python) -> list[Table]
_MODULES = {
    "accuracy": "gdlphys.bench.accuracy",
    "md": "gdlphys.bench.md",
    "memory": "gdlphys.bench.memory",
    "train": "gdlphys.bench.throughput",
    "neighbours": "gdlphys.bench.neighbours",
}


def run_benchmarks(names: list[str], options: BenchOptions) -> list[Table]:
    """Run ``names`` (from BENCHMARKS; accuracy first, so md can use its trained models)."""
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)} or all")
    peer_python = find_peer_python(options.peer_python)  # fails first, before any work
    options.out.mkdir(parents=True, exist_ok=True)
    tables: list[Table] = []
    for name in (n for n in BENCHMARKS if n in names):
        start = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        produced = import_module(_MODULES[name]).run(options, peer_python)
        for table in produced:
            print("\n" + table.render() + "\n", flush=True)
        print(
            f"bench: {name} done in {time.perf_counter() - start:.0f} s -> {options.out / (name + '.json')}, "
            f"{options.out / (name + '.png')}",
            file=sys.stderr, flush=True,
        )
        tables += produced
    return tables

"""``gdlphys bench``: gdlphys and MACE side by side (accuracy per training minute, MD and training
speed), and neighbour lists beside ASE, vesin and matscipy."""

from __future__ import annotations

import argparse
from pathlib import Path

from gdlphys.cli.threads import set_threads

_CHOICES = ("accuracy", "md", "memory", "train", "neighbours", "all")


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmarks against MACE, side by side (needs the peer venv: make bench-env)",
        description=(
            "Each benchmark measures gdlphys and its peers in the same run, prints a table with the ratio and "
            "writes OUT/<name>.json and OUT/<name>.png. MACE, vesin and matscipy run in their own virtual "
            "environment (make bench-env creates .bench/venv)."
        ),
    )
    p.add_argument("benchmark", nargs="?", default="all", choices=_CHOICES, help="which benchmark (default: all)")
    p.add_argument("--budget-min", type=float, default=15.0, help="accuracy: training minutes per code (default 15)")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few minutes: small data, tiny budgets and sizes")
    p.add_argument("--out", default="bench-results", help="output folder (default bench-results/)")
    p.add_argument("--peer-python", default=None, help="Python of the peer environment (default .bench/venv/bin/python)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for each code, the same for both (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device for both codes (default cpu)")
    p.add_argument("--drift-ps", type=float, default=0.0, help="md: also compare NVE energy drift over this many ps (default 0: no)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="md: also time gdlphys through torch.compile, compile time reported apart (default: yes, not with --quick)")
    p.add_argument("--parallel", action="store_true",
                   help="accuracy: train both codes at the same time, --threads each (needs 2x --threads free cores)")
    p.add_argument("--at-defaults", action="store_true",
                   help="md: also each code at its own defaults (threads, dtype), quiet and with one core busy; "
                        "accuracy: each code trains at its own use of the machine (gdlphys: data-parallel processes "
                        "on the idle cores; MACE: torch's default threads) instead of --threads each")
    p.add_argument("--dataset", default="aspirin-xtb",
                   help="accuracy: a shipped dataset's name or a folder with train.h5, valid.h5, test.h5 (default aspirin-xtb)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run_bench)


def run_bench(args) -> int:
    import subprocess
    import sys

    from gdlphys.bench import BENCHMARKS, BenchOptions, run_benchmarks
    from gdlphys.bench.peers import PeerError

    options = BenchOptions(
        out=Path(args.out), budget_min=args.budget_min, quick=args.quick,
        peer_python=Path(args.peer_python) if args.peer_python else None, threads=args.threads,
        device=args.device, drift_ps=args.drift_ps, seed=args.seed, compile=args.compile, parallel=args.parallel,
        at_defaults=args.at_defaults, dataset=args.dataset,
    )
    set_threads(args.threads, 0)
    names = list(BENCHMARKS) if args.benchmark == "all" else [args.benchmark]
    try:
        run_benchmarks(names, options)
    except (PeerError, subprocess.CalledProcessError) as err:  # a failed child: one line, its log named
        print(f"gdlphys bench: error: {err}", file=sys.stderr)
        return 1
    return 0

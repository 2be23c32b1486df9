"""The GPU check: one prepared run, under 10 minutes, that writes one JSON.

On a machine with CUDA (and gdlphys installed: ``pip install -e .`` with a CUDA build of torch
and torch-cluster), from the repository root:

    python benchmarks/gpu_check.py --out bench-results/gpu-check.json

Steps, each timed and recorded (a failing step is recorded with its error; the rest still run):
1. ``tests`` : the test suite's CUDA tests (``pytest -k cuda``, they skip on CPU).
2. ``radius_graph`` : the CUDA neighbour list (torch-cluster) against the CPU one (vesin) on a
   periodic box and a batch of molecules: the same edges, and the time of each.
3. ``training`` : ``gdlphys train`` for one epoch of aspirin-xtb on the GPU (frames/s).
4. ``md`` : MD steps/s of GDLCalculator on CUDA at ~20, ~160 and ~1,300 atoms, eager.
5. ``predict`` : ``gdlphys predict`` on 20 SMILES on the GPU (molecules per minute).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMILES = ["CCO", "CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
          "CCN(CC)CC", "OC(=O)c1ccccc1O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "COc1ccccc1", "NC(=O)c1ccccc1",
          "CC#N", "O=C1CCCCC1", "c1ccncc1", "CC(C)O", "OCCO", "CSC", "FC(F)(F)c1ccccc1", "Clc1ccccc1", "CCOC(=O)C", "C1CCOC1"]


def step(results: dict, name: str, function) -> None:
    start = time.perf_counter()
    try:
        results[name] = {"ok": True, **function()}
    except Exception as err:  # noqa: BLE001 - every step is reported, whatever fails
        results[name] = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    results[name]["seconds"] = time.perf_counter() - start
    print(f"gpu check: {name}: {'ok' if results[name]['ok'] else results[name]['error']} "
          f"({results[name]['seconds']:.0f} s)", file=sys.stderr, flush=True)


def cuda_tests() -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0:
        raise RuntimeError(f"pytest exit {done.returncode}: {tail}\n{done.stdout[-2000:]}")
    return {"summary": tail}


def _radius_graph_compare(np, torch) -> dict:
    from ase.build import bulk

    from gdlphys.graph import structure_graph

    rows = {}
    for name, atoms in {"Cu 4x4x4 (periodic)": bulk("Cu", "fcc", a=3.6, cubic=True).repeat((4, 4, 4))}.items():
        out = {}
        for device in ("cpu", "cuda"):
            start = time.perf_counter()
            graph = structure_graph(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, cutoff=5.0,
                                    dtype=torch.float64, device=device)
            if device == "cuda":
                torch.cuda.synchronize()
            out[device] = (graph, time.perf_counter() - start)
        edges = {d: {(int(i), int(j), tuple(np.round(s, 6))) for i, j, s in zip(
            out[d][0]["edge_index"][0].cpu(), out[d][0]["edge_index"][1].cpu(), out[d][0]["edge_shifts"].cpu().numpy())}
            for d in out}
        if edges["cpu"] != edges["cuda"]:
            raise AssertionError(f"{name}: CUDA and CPU neighbour lists differ ({len(edges['cpu'])} vs {len(edges['cuda'])} edges)")
        rows[name] = {"edges": len(edges["cpu"]), "cpu_s": out["cpu"][1], "cuda_s": out["cuda"][1]}
    return {"systems": rows}


def training() -> dict:
    run = ROOT / "bench-results" / "gpu-check-train"
    argv = [sys.executable, "-m", "gdlphys.cli", "train", "--train", "datasets/aspirin-xtb/train.h5", "--valid",
            "datasets/aspirin-xtb/valid.h5", "--max-epochs", "2", "--trainer.accelerator", "gpu", "--trainer.devices", "1",
            "--quiet", "true", "-o", str(run)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    from gdlphys.bench.scale_out import epoch_seconds
    from gdlphys.data import FrameReader

    with FrameReader(ROOT / "datasets/aspirin-xtb/train.h5") as reader:
        n = len(reader)
    seconds = epoch_seconds(run)
    return {"epoch_seconds": seconds, "frames_per_second": n / seconds[-1]}


def md() -> dict:
    import ase.io  # noqa: F401
    import numpy as np

    from gdlphys.bench.md import GRIDS
    from gdlphys.bench.systems import aspirin_molecule, molecule_box
    from gdlphys.calculator import GDLCalculator
    from gdlphys.nve import initialise_velocities, steps_per_second

    rows = []
    for grid in GRIDS:  # aspirin copies: 21, 168, 2016 atoms
        atoms = molecule_box(aspirin_molecule(), grid)
        atoms.calc = GDLCalculator("organic-xtb", device="cuda")
        initialise_velocities(atoms, 300.0, np.random.default_rng(0))
        speed = steps_per_second(atoms, 0.5, 5.0, 5000, 5)
        rows.append({"n_atoms": len(atoms), **speed})
    return {"rows": rows}


def predict() -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gdlphys.cli", "predict", *SMILES, "--device", "cuda", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    minutes = (time.perf_counter() - start) / 60.0
    return {"molecules": len(SMILES), "molecules_per_minute": len(SMILES) / minutes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "gpu-check.json")
    args = parser.parse_args(argv)
    import torch

    results: dict = {"machine": platform.node(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        print("gpu check: no CUDA device here; nothing to check", file=sys.stderr)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        return 2
    results["device"] = torch.cuda.get_device_name(0)
    step(results, "tests", cuda_tests)
    step(results, "radius_graph", lambda: _radius_graph_compare(__import__("numpy"), torch))
    step(results, "training", training)
    step(results, "md", md)
    step(results, "predict", predict)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "traceback"})
                      for k, v in results.items()}, indent=1))
    return 0 if all(v.get("ok", True) for v in results.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())

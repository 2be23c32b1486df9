"""Training memory on a file larger than the memory cap: RSS stays flat while frames stream.

Builds an HDF5 file of perturbed aspirin frames (``--frames``, default 400,000: ~0.5 GB on disk,
several GB as graphs with neighbour lists), then runs ``gdlphys train`` on it for a fixed number
of steps, with the graph cache capped (``GDLPHYS_CACHE_MB``), sampling the resident memory of
the training process (and its children) every 0.5 s. Prints the RSS over time and its peak,
and writes a JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_memory.py --cache-mb 200 --steps 3000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (bytes), from /proc."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def make_file(path: Path, n_frames: int, seed: int = 0) -> None:
    """``n_frames`` aspirin frames: shipped aspirin-xtb frames, positions perturbed, labels kept
    (a memory test: the labels need not match the geometry)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from gdlphys.data import read_hdf5
    from gdlphys.data.hdf5_writer import FrameWriter

    base = read_hdf5(ROOT / "datasets" / "aspirin-xtb" / "train.h5")
    rng = np.random.default_rng(seed)
    with FrameWriter(path, method="GFN2-xTB (perturbed geometries: memory test only)") as writer:
        block = []
        for k in range(n_frames):
            source = base[k % len(base)]
            atoms = source.copy()
            atoms.positions = atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)
            atoms.calc = SinglePointCalculator(atoms, energy=source.get_potential_energy(), forces=source.get_forces())
            block.append(atoms)
            if len(block) == 5000:
                writer.extend(block)
                block = []
        writer.extend(block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400_000)
    parser.add_argument("--steps", type=int, default=3000, help="training steps (limit_train_batches)")
    parser.add_argument("--cache-mb", type=float, default=200.0, help="graph cache cap (GDLPHYS_CACHE_MB)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=Path("bench-results/train-memory.json"))
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="gdlphys-train-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "big.h5"
    if not data.exists():
        start = time.perf_counter()
        make_file(data, args.frames)
        print(f"train memory: {args.frames} frames, {data.stat().st_size / 2**20:.0f} MiB on disk "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    run = work / f"run-{args.cache_mb:g}"
    argv_train = [sys.executable, "-m", "gdlphys.cli", "train", "--train", str(data), "--max-epochs", "1",
                  "--trainer.limit_train_batches", str(args.steps), "--trainer.limit_val_batches", "20",
                  "--trainer.accelerator", "cpu", "--quiet", "true", "-o", str(run)]
    env = {**os.environ, "GDLPHYS_CACHE_MB": str(args.cache_mb), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv_train, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    start = time.perf_counter()
    while process.poll() is None:
        samples.append((time.perf_counter() - start, rss_bytes(process.pid)))
        time.sleep(0.5)
    stderr = process.stderr.read()
    if process.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
        return 1
    rss = np.array([s[1] for s in samples]) / 2**20
    times = np.array([s[0] for s in samples])
    quarters = [float(np.max(rss[(times >= q * times[-1] / 4) & (times <= (q + 1) * times[-1] / 4)])) for q in range(4)]
    result = {
        "frames": args.frames, "file_mib": data.stat().st_size / 2**20, "steps": args.steps, "cache_mib": args.cache_mb,
        "peak_rss_mib": float(rss.max()), "peak_rss_by_quarter_mib": quarters, "seconds": float(times[-1]),
        "trace_s": times[::10].tolist(), "trace_rss_mib": rss[::10].tolist(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"train memory: file {result['file_mib']:.0f} MiB, cache cap {args.cache_mb:g} MiB, {args.steps} steps in "
          f"{result['seconds']:.0f} s: peak RSS {result['peak_rss_mib']:.0f} MiB; per quarter of the run "
          + ", ".join(f"{q:.0f}" for q in quarters) + " MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

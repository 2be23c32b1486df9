"""Training throughput of gdlphys on this machine's cores: one process with one thread, one
process with every core's thread, and one data-parallel (DDP) process per core with one thread
each. Each run is ``gdlphys train`` at its defaults on the same frames; frames per second come
from the epochs' own wall time (``train/epoch_seconds`` in metrics.csv), the first epoch (cache
of neighbour lists, warm-up) left out."""

from __future__ import annotations

import csv
import os
import statistics as stats
import subprocess
import sys
from pathlib import Path

from gdlphys.bench.options import BenchOptions
from gdlphys.bench.report import Table, write_report
from gdlphys.bench.systems import Split, aspirin_split, subset_split
from gdlphys.paths import find_shipped

FULL = {"frames": 400, "epochs": 3}
QUICK = {"frames": 24, "epochs": 2}


def _log(message: str) -> None:
    print(f"bench scale-out: {message}", file=sys.stderr, flush=True)


def _layouts(cores: int) -> list[tuple[str, int, int]]:
    """(name, processes, threads per process)."""
    return [("1 process x 1 thread", 1, 1), (f"1 process x {cores} threads", 1, cores), (f"{cores} DDP processes x 1 thread", cores, 1)]


def _spread_subset(source: Path, folder: Path, n_train: int, n_valid: int) -> Split:
    """Frames spread over the whole file (every element in the training part), the validation
    frames taken between them: throughput, not accuracy, is measured."""
    from gdlphys.data import FrameReader, read_hdf5, write_hdf5

    with FrameReader(source) as reader:
        n = len(reader)
    step = max(1, n // (n_train + n_valid))
    picked = list(range(0, n, step))
    folder.mkdir(parents=True, exist_ok=True)
    split = Split(folder / "train.h5", folder / "valid.h5", folder / "valid.h5")
    write_hdf5(split.train, read_hdf5(source, index=picked[:n_train]), method="GFN2-xTB")
    write_hdf5(split.valid, read_hdf5(source, index=picked[n_train : n_train + n_valid] or picked[:n_valid]), method="GFN2-xTB")
    return split


def epoch_seconds(run_dir: Path) -> list[float]:
    """``train/epoch_seconds`` of every epoch of a run (the newest attempt)."""
    logs = sorted(run_dir.glob("logs/attempt-*/metrics.csv"))
    with open(logs[-1]) as handle:
        return [float(row["train/epoch_seconds"]) for row in csv.DictReader(handle) if row.get("train/epoch_seconds")]


def frames_per_second(train: Path, valid: Path, work: Path, processes: int, threads: int, epochs: int, n_frames: int) -> float:
    argv = [sys.executable, "-m", "gdlphys.cli", "train", "--train", str(train), "--valid", str(valid),
            "--max-epochs", str(epochs), "--threads", str(threads), "--trainer.accelerator", "cpu", "--quiet", "true",
            "-o", str(work)]
    if processes > 1:
        argv += ["--trainer.strategy", "ddp", "--trainer.devices", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"gdlphys train failed ({' '.join(argv)}):\n{done.stderr[-3000:]}")
    seconds = epoch_seconds(work)
    timed = seconds[1:] or seconds
    return n_frames / stats.median(timed)


def run(options: BenchOptions) -> list[Table]:
    work = options.work_dir("scale-out")
    setting = QUICK if options.quick else FULL
    cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    datasets = {"aspirin-xtb (21 atoms)": subset_split(aspirin_split(), work / "aspirin", setting["frames"], 20, 1)}
    nci = find_shipped("datasets", "nci-xtb")
    if nci is not None:
        datasets["nci-xtb (8-34 atoms)"] = _spread_subset(nci / "train.h5", work / "nci", setting["frames"], 20)
    tables, raw = [], {}
    for name, split in datasets.items():
        table = Table(f"gdlphys training throughput on {cores} cores: {name}, defaults, {setting['frames']} frames",
                      ["frames/s", "vs 1 x 1"], ratio=None)
        base = None
        for layout, processes, threads in _layouts(cores):
            fps = frames_per_second(split.train, split.valid, work / f"{name.split()[0]}-{processes}x{threads}",
                                    processes, threads, setting["epochs"], setting["frames"])
            base = base or fps
            raw[f"{name}: {layout}"] = fps
            _log(f"{name}, {layout}: {fps:.1f} frames/s")
            table.add(layout, "frames/s", {"frames/s": fps, "vs 1 x 1": fps / base}, better="higher")
        table.notes.append(f"median epoch after a warm-up epoch, {setting['epochs']} epochs; gdlphys train at its defaults")
        tables.append(table)
    write_report(options.out, "scale-out", tables, raw, options.to_dict())
    return tables

"""Accuracy per training minute: both codes trained on the same aspirin frames for the same
wall-clock budget, then their errors on the same held-out test trajectory."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gdlphys.bench.options import BenchOptions
from gdlphys.bench.peers import PeerError, PeerRun, run_peer, thread_environment
from gdlphys.bench.report import Table, bar_panels, write_report
from gdlphys.bench.systems import Split, dataset_split, export_extxyz, subset_split

QUICK_FRAMES = (50, 10, 20)  # train, valid, test frames of a --quick run
QUICK_BUDGET_S = 12.0


def _log(message: str) -> None:
    print(f"bench accuracy: {message}", file=sys.stderr, flush=True)


def gdlphys_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "gdlphys.cli", *arguments]


def train_command(split: Split, run_dir: Path, budget_s: float, options: BenchOptions, threads: int | None) -> list[str]:
    command = gdlphys_command(
        "train", "--train", str(split.train), "--valid", str(split.valid), "--max-time", f"{budget_s:.0f}s",
        "-o", str(run_dir), "--fit.seed", str(options.seed),
    )
    if threads is not None:
        command += ["--threads", str(threads)]
    if options.device == "cuda":  # naming the accelerator on a CPU would also turn off the data-parallel default
        command += ["--trainer.accelerator", "gpu"]
    return command


def train_gdlphys(split: Split, run_dir: Path, budget_s: float, options: BenchOptions, threads: int | None) -> dict:
    """``gdlphys train`` with its default configuration, stopped by Lightning at the budget; ``threads``
    None: the command's own use of the machine (data-parallel processes on the idle cores). Its
    output goes to ``run_dir``.log."""
    shutil.rmtree(run_dir, ignore_errors=True)  # a RUN_DIR with a checkpoint would resume, not start afresh
    command = train_command(split, run_dir, budget_s, options, threads)
    log = run_dir.with_suffix(".log")
    start = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=thread_environment(threads), check=False)
    process_s = time.perf_counter() - start
    if done.returncode != 0:
        raise PeerError(f"gdlphys train exited with {done.returncode}; see {log}")
    found = re.search(r"gdlphys train: (\d+) data-parallel processes", log.read_text(errors="replace"))
    potential = run_dir / "potential.pt"
    import torch

    metadata = torch.load(potential, weights_only=True, map_location="cpu").get("metadata", {})
    return {"process_s": process_s, "epochs": metadata.get("epochs"), "steps": metadata.get("global_steps"), "potential": str(potential),
            "processes": int(found.group(1)) if found else 1, "threads": threads, "log": str(log)}


def evaluate_gdlphys(potential: str, test: Path, options: BenchOptions, threads: int | None) -> dict:
    command = gdlphys_command("eval", potential, str(test), "--json", "--device", options.device)
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=thread_environment(threads))
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe(split: Split, dataset: str) -> str:
    """``name (formula, level of theory)`` of a dataset, from its first test frame and the file's method."""
    import h5py

    from gdlphys.data import read_hdf5

    with h5py.File(split.test, "r") as f:
        method = str(f.attrs.get("method", "reference"))
    formula = read_hdf5(split.test, index=slice(0, 1))[0].get_chemical_formula()
    return f"{Path(dataset).name} ({formula}, {method})"


def run(options: BenchOptions, peer_python: Path) -> list[Table]:
    if options.parallel and options.at_defaults:
        raise ValueError("--parallel and --at-defaults exclude each other: at its defaults each code takes the whole machine")
    work = options.work_dir("accuracy")
    split = dataset_split(options.dataset)
    what = describe(split, options.dataset)
    threads = None if options.at_defaults else options.threads
    use = "each code at its own use of the machine" if threads is None else f"{threads} thread(s) each"
    budget_s = QUICK_BUDGET_S if options.quick else 60.0 * options.budget_min
    if options.quick:
        split = subset_split(split, work / "data", *QUICK_FRAMES)
    xyz = {name: work / f"{name}.xyz" for name in ("train", "valid", "test")}
    counts = {name: export_extxyz(getattr(split, name), path) for name, path in xyz.items()}
    _log(f"{counts['train']} training, {counts['valid']} validation, {counts['test']} test frames; "
         f"{what}; budget {budget_s / 60:.2f} min per code, {use}, {options.device}")

    mace_dir = work / "mace"
    shutil.rmtree(mace_dir, ignore_errors=True)
    mace_what = f"MACE (mace_run_train, 32x0e+32x1o, max_ell 3, correlation 3, EMA, stage two) for {budget_s / 60:.2f} min"
    mace_arguments = ["--train", str(xyz["train"]), "--valid", str(xyz["valid"]), "--work-dir", str(mace_dir),
                      "--budget-s", str(budget_s), "--device", options.device, "--seed", str(options.seed)]

    def start_mace() -> PeerRun:
        return PeerRun(peer_python, "mace_train.py", mace_arguments, work / "mace-train.json", work / "mace-train.log",
                       threads, "MACE training")

    mace = None
    if options.parallel:
        _log(f"training {mace_what}, in the background ...")
        mace = start_mace()
    try:
        _log(f"training gdlphys (gdlphys train, default configuration) for {budget_s / 60:.2f} min, log in {work / 'gdlphys.log'} ...")
        ours = train_gdlphys(split, work / "gdlphys", budget_s, options, threads)
    except BaseException:
        if mace is not None:
            mace.stop()
        raise
    if mace is None:
        _log(f"training {mace_what} ...")
        mace = start_mace()
    peer = mace.finish()
    ours["test"] = evaluate_gdlphys(ours["potential"], split.test, options, threads)
    peer["test"] = run_peer(
        peer_python, "mace_eval.py", ["--model", peer["model"], "--data", str(xyz["test"]), "--device", options.device],
        work / "mace-eval.json", work / "mace-eval.log", threads, "MACE evaluation",
    )
    if peer["test"]["n_frames"] != ours["test"]["n_frames"]:
        raise PeerError(f"test sets differ: gdlphys {ours['test']['n_frames']} frames, MACE {peer['test']['n_frames']}")

    table = accuracy_table(ours, peer, budget_s, counts, what, options.parallel)
    panels = [
        ("energy MAE (meV/atom)", {"gdlphys": 1000 * ours["test"]["energy_per_atom_mae"], "MACE": 1000 * peer["test"]["energy_per_atom_mae"]}),
        ("force MAE (meV/Å)", {"gdlphys": 1000 * ours["test"]["forces_mae"], "MACE": 1000 * peer["test"]["forces_mae"]}),
        ("epochs in the budget", {"gdlphys": ours["epochs"], "MACE": peer["epochs"]}),
    ]
    bar_panels(options.out / "accuracy.png", f"{what}, {budget_s / 60:.3g} min of training each, {use}, test errors", panels)
    write_report(options.out, "accuracy", [table], {"gdlphys": ours, "MACE": peer, "frames": counts, "budget_s": budget_s, "dataset": what}, options.to_dict())
    return [table]


def _gdlphys_defaults() -> str:
    from gdlphys.models.config import ModelConfig
    from gdlphys.train.config import ATOMS_PER_BATCH, FitConfig

    m, f = ModelConfig(), FitConfig()
    block = f"product basis, correlation {m.correlation}" if m.interaction == "mace" else "NequIP gate"
    batch = f"batch {f.batch_size}" if f.batch_size else f"batches of about {ATOMS_PER_BATCH} atoms"
    parts = [f"{m.num_features} features, l_max {m.l_max}, {m.num_layers} layers ({block}), cutoff {m.cutoff:g} Å, {f.dtype}, "
             f"lr {f.lr:g}, {batch}"]
    if f.ema_decay > 0:
        parts.append("EMA")
    if getattr(f, "stage_two_fraction", 0) > 0:
        parts.append(f"stage two over the last {100 * f.stage_two_fraction:.0f} %")
    return ", ".join(parts)


def accuracy_table(ours: dict, peer: dict, budget_s: float, counts: dict, what: str, parallel: bool = False) -> Table:
    table = Table(
        f"accuracy: {what}, {counts['train']} train / {counts['valid']} valid / {counts['test']} test frames, "
        f"{budget_s / 60:.3g} min of training each",
        ["gdlphys", "MACE"],
    )
    a, b = ours["test"], peer["test"]
    table.add("test energy MAE", "meV/atom", {"gdlphys": 1000 * a["energy_per_atom_mae"], "MACE": 1000 * b["energy_per_atom_mae"]})
    table.add("test energy MAE", "meV", {"gdlphys": 1000 * a["energy_mae"], "MACE": 1000 * b["energy_mae"]})
    table.add("test force MAE", "meV/Å", {"gdlphys": 1000 * a["forces_mae"], "MACE": 1000 * b["forces_mae"]})
    table.add("test force RMSE", "meV/Å", {"gdlphys": 1000 * a["forces_rmse"], "MACE": 1000 * b["forces_rmse"]})
    table.add("epochs trained", "", {"gdlphys": ours["epochs"], "MACE": peer["epochs"]}, better="")
    table.add("training process", "s", {"gdlphys": ours["process_s"], "MACE": peer["process_s"]}, better="")
    if parallel:
        table.notes.append("both codes trained at the same time (--parallel), one process each")
    if ours.get("threads") is None:
        processes = ours.get("processes", 1)
        mine = f"{processes} data-parallel processes of one thread" if processes > 1 else "one process, threads of its own choosing"
        table.notes.append(f"each code at its own use of the machine: gdlphys {mine}; MACE one process of {peer.get('threads', '?')} torch threads")
    table.notes += [
        f"gdlphys: `gdlphys train` defaults ({_gdlphys_defaults()}), stopped by Lightning's max_time",
        (
            f"MACE: 32x0e+32x1o, max_ell 3, correlation 3, 2 interactions, r_max 5 Å, float32, EMA, stage two from "
            f"epoch {peer.get('stage_two_start')}, E0s fitted; training loop {peer.get('train_loop_s', 0):.0f} s"
        ),
        "training process: the whole command (data loading, statistics, training, export)",
    ]
    return table

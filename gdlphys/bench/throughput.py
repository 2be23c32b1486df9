"""Training throughput: frames per second through each code's own training loop.

gdlphys: its Lightning system (``PotentialTask``) and data module, as ``gdlphys train`` builds
them; MACE: ``mace_run_train``. Both at the same batch size, on the same aspirin frames; an
epoch's time runs from its start to its last optimiser step (data loading included,
validation not), and the first epoch (warm-up) is left out.
"""

from __future__ import annotations

import statistics as stats
import sys
import time
from pathlib import Path

from gdlphys.bench.options import BenchOptions
from gdlphys.bench.peers import run_peer
from gdlphys.bench.report import Table, bar_panels, write_report
from gdlphys.bench.systems import Split, aspirin_split, export_extxyz, subset_split

BATCH_SIZE = 8
FULL = {"frames": (200, 20), "epochs": 3}
QUICK = {"frames": (24, 8), "epochs": 2}


def _log(message: str) -> None:
    print(f"bench train: {message}", file=sys.stderr, flush=True)


def gdlphys_epoch_seconds(split: Split, epochs: int, batch_size: int, options: BenchOptions) -> tuple[list[float], int]:
    """Seconds of each training epoch of the default model, and the parameter count."""
    import lightning as L
    import torch

    from gdlphys.data.datamodule import FramesDataModule
    from gdlphys.models.config import ModelConfig
    from gdlphys.train.config import FitConfig
    from gdlphys.train.run import build_potential
    from gdlphys.train.statistics import compute_statistics
    from gdlphys.train.system import PotentialTask

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self._start = self._last = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self._last = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            self.seconds.append(self._last - self._start)
            _log(f"gdlphys epoch {len(self.seconds) - 1}: {self.seconds[-1]:.1f} s")

    model, fit = ModelConfig(), FitConfig(batch_size=batch_size, seed=options.seed)
    dtype = getattr(torch, fit.dtype)
    data = FramesDataModule(
        split.train, split.valid, cutoff=model.cutoff, batch_size=fit.batch_size,
        valid_batch_size=fit.valid_batch_size, seed=fit.seed, dtype=dtype,
    )
    data.setup("fit")
    statistics = compute_statistics(data.train_set[i] for i in range(len(data.train_set)))
    task = PotentialTask(build_potential(model, statistics, fit.seed, dtype), fit)
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="gpu" if options.device == "cuda" else "cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        inference_mode=False, gradient_clip_val=fit.grad_clip, callbacks=[timer],
    )
    trainer.fit(task, datamodule=data)
    return timer.seconds, sum(p.numel() for p in task.potential.parameters())


def run(options: BenchOptions, peer_python: Path) -> list[Table]:
    work = options.work_dir("train")
    setting = QUICK if options.quick else FULL
    n_train, n_valid = setting["frames"]
    epochs = setting["epochs"]
    split = subset_split(aspirin_split(), work / "data", n_train, n_valid, 1)
    xyz = {name: work / f"{name}.xyz" for name in ("train", "valid")}
    for name, path in xyz.items():
        export_extxyz(getattr(split, name), path)
    _log(f"{n_train} aspirin frames, batch size {BATCH_SIZE}, {epochs} epochs each (the first is warm-up)")

    seconds, n_params = gdlphys_epoch_seconds(split, epochs, BATCH_SIZE, options)
    peer = run_peer(
        peer_python, "mace_train.py",
        ["--train", str(xyz["train"]), "--valid", str(xyz["valid"]), "--work-dir", str(work / "mace"),
         "--epochs", str(epochs), "--batch-size", str(BATCH_SIZE), "--device", options.device, "--seed", str(options.seed)],
        work / "mace-train.json", work / "mace-train.log", options.threads, "MACE training",
    )

    def frames_per_second(epoch_seconds: list[float]) -> float:
        timed = epoch_seconds[1:] or epoch_seconds
        return n_train / stats.median(timed)

    ours = {"epoch_seconds": seconds, "frames_per_second": frames_per_second(seconds), "parameters": n_params}
    theirs = {"epoch_seconds": peer["epoch_seconds"], "frames_per_second": frames_per_second(peer["epoch_seconds"])}
    table = Table(f"training throughput: aspirin (21 atoms), batch size {BATCH_SIZE}, {options.threads} thread(s), {options.device}", ["gdlphys", "MACE"])
    table.add("training frames per second", "frames/s", {"gdlphys": ours["frames_per_second"], "MACE": theirs["frames_per_second"]}, better="higher")
    table.add("training steps per second", "steps/s", {"gdlphys": ours["frames_per_second"] / BATCH_SIZE, "MACE": theirs["frames_per_second"] / BATCH_SIZE}, better="higher")
    table.notes += [
        "gdlphys: default model (32 features, l_max 2, 3 layers, cutoff 5 Å), float32, EMA, its Lightning loop",
        "MACE: 32x0e+32x1o, max_ell 3, correlation 3, 2 interactions, r_max 5 Å, float32, EMA, mace_run_train's loop",
        f"median epoch of {n_train} frames after a warm-up epoch; data loading in, validation out",
    ]
    bar_panels(options.out / "train.png", table.title, [("training frames/s", {"gdlphys": ours["frames_per_second"], "MACE": theirs["frames_per_second"]})])
    write_report(options.out, "train", [table], {"gdlphys": ours, "MACE": {**peer, **theirs}, "batch_size": BATCH_SIZE, "frames": n_train}, options.to_dict())
    from gdlphys.bench import scale_out  # every core: threads against data-parallel processes

    return [table, *scale_out.run(options)]

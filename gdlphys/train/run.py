"""One training run: data -> statistics -> potential -> Lightning Trainer -> deployable potential file."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gdlphys.data.datamodule import FramesDataModule, file_sha256
from gdlphys.data.hdf5 import FrameReader
from gdlphys.io_utils import atomic_write
from gdlphys.models.config import ModelConfig
from gdlphys.models.files import POTENTIAL_FILENAME, save_potential
from gdlphys.models.potential import Potential
from gdlphys.threads import ThreadPolicy, using_threads
from gdlphys.train.config import ATOMS_PER_BATCH, FitConfig
from gdlphys.train.plots import plot_learning_curve
from gdlphys.train.statistics import DatasetStatistics, compute_statistics
from gdlphys.train.system import PotentialTask

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(text: str) -> timedelta:
    """'15m', '1h30m', '90s', '2d', or 'DD:HH:MM:SS' -> timedelta."""
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        parts = [0.0] * (4 - len(parts)) + parts
        return timedelta(days=parts[0], hours=parts[1], minutes=parts[2], seconds=parts[3])
    match = _DURATION.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"cannot read the duration {text!r}; use e.g. 15m, 1h30m, 90s or DD:HH:MM:SS")
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary name and are renamed: a kill never leaves a broken one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            torch.save(checkpoint, tmp)


def _attempt_number(run_dir: Path) -> int:
    """Each (re)start logs to its own CSV: Lightning's CSV logger would overwrite the earlier epochs."""
    return len(metrics_files(run_dir)) if (run_dir / "logs").is_dir() else 0


def metrics_files(run_dir: Path) -> list[Path]:
    """The per-attempt metric logs of a run, oldest first."""
    files = (run_dir / "logs").glob("attempt-*/metrics.csv")
    return sorted(files, key=lambda p: int(p.parent.name.split("-")[1]))


@dataclass
class TrainResult:
    run_dir: Path
    potential_path: Path
    statistics: DatasetStatistics
    metrics: dict[str, float]
    epochs: int


STATISTICS_FRAMES = 50_000  # frames the normalisation is estimated on (E0, force RMS, neighbour count)


def training_sample(train_set, seed: int, limit: int = STATISTICS_FRAMES):
    """The training graphs the statistics are computed on: all of them, or a seeded ``limit`` of a
    larger set (E0 and the RMS are settled long before; a file larger than memory is not read whole)."""
    n = len(train_set)
    indices = range(n) if n <= limit else sorted(np.random.default_rng([seed, 3]).choice(n, limit, replace=False).tolist())
    return (train_set[i] for i in indices)


def training_elements(train_set) -> list[int] | None:
    """Every element of the training files (a sample could miss a rare one), or None for a dataset of graphs."""
    readers = [d.reader for d in _graph_datasets(train_set)]
    if not readers:
        return None
    return sorted({z for reader in readers for z in reader.elements()})


def _graph_datasets(dataset) -> list:
    from torch.utils.data import ConcatDataset, Subset

    from gdlphys.data.datamodule import GraphDataset

    if isinstance(dataset, GraphDataset):
        return [dataset]
    if isinstance(dataset, Subset):
        return _graph_datasets(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [d for part in dataset.datasets for d in _graph_datasets(part)]
    return []


def build_potential(model: ModelConfig, statistics: DatasetStatistics, seed: int, dtype: torch.dtype) -> Potential:
    """Fresh potential normalised by the training statistics; weights seeded without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        potential = Potential(
            model,
            statistics.species,
            statistics.reference_energies,
            statistics.avg_num_neighbors,
            scale=statistics.force_rms,
            dtype=dtype,
        )
    return potential


def data_parallel_strategy(strategy: Any) -> Any:
    """``"ddp"`` as a DDP strategy that tolerates parameters without a gradient in a step: a dipole
    head on frames without dipoles, or entries frozen for fine-tuning, take no part in the loss,
    and plain DDP stops at the first step asking for ``find_unused_parameters``."""
    if isinstance(strategy, str) and strategy in ("ddp", "ddp_spawn"):
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True, start_method="popen" if strategy == "ddp" else "spawn")
    return strategy


def fit_task(
    task: PotentialTask,
    data: L.LightningDataModule,
    run_dir: Path,
    fit: FitConfig,
    trainer: dict[str, Any] | None = None,
    max_time: str | None = None,
    max_epochs: int | None = None,
    progress: bool = True,
    threads: int | None = None,
    atoms_per_step: float | None = None,
) -> L.Trainer:
    """The Lightning part of a run (train or fine-tune): checkpoints every epoch, CSV logs per
    attempt, and resumption from ``run_dir/checkpoints/last.ckpt`` when a run was cut short.

    The run has ``threads`` CPU threads, or for None the thread policy's choice for
    ``atoms_per_step`` (:class:`gdlphys.threads.ThreadPolicy`: one below 300 atoms, else the
    usable cores no other process is busy on); the caller's setting is restored afterwards."""
    trainer_options = dict(trainer or {})
    if max_time is not None:
        trainer_options["max_time"] = parse_duration(max_time)
    if max_epochs is not None:
        trainer_options["max_epochs"] = max_epochs
    if "max_time" not in trainer_options and trainer_options.get("max_epochs") is None:
        trainer_options["max_epochs"] = 100
    trainer_options.setdefault("accelerator", "auto")
    trainer_options.setdefault("devices", 1)
    # Our samplers shard themselves (Lightning replaces only samplers it knows, and its
    # DistributedSampler would pad validation with repeated frames).
    trainer_options.setdefault("use_distributed_sampler", False)
    trainer_options["strategy"] = data_parallel_strategy(trainer_options.get("strategy", "auto"))
    if fit.grad_clip > 0:
        trainer_options.setdefault("gradient_clip_val", fit.grad_clip)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/loss", save_top_k=1)
    # Lightning's save_last only rewrites last.ckpt when val/loss improves: a separate callback
    # writes it after every epoch, so a killed run resumes from its latest epoch, not its best.
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks = [best, last] + ([TQDMProgressBar(refresh_rate=10)] if progress else [])
    lightning_trainer = L.Trainer(
        default_root_dir=run_dir,
        logger=CSVLogger(save_dir=run_dir / "logs", name="", version=f"attempt-{_attempt_number(run_dir)}"),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        inference_mode=False,  # validation needs autograd: forces are -dE/dr
        **trainer_options,
    )
    last_path = run_dir / "checkpoints" / "last.ckpt"
    resume = last_path if last_path.is_file() else None
    if resume is not None and progress:
        print(f"gdlphys: resuming from {resume}", file=sys.stderr)
    if threads is None:
        threads = ThreadPolicy()(atoms_per_step if atoms_per_step is not None else ATOMS_PER_BATCH)
    with using_threads(threads):
        lightning_trainer.fit(task, datamodule=data, ckpt_path=resume)
    return lightning_trainer


def train_potential(
    train: str | Path,
    output: str | Path,
    valid: str | Path | None = None,
    model: ModelConfig | None = None,
    fit: FitConfig | None = None,
    trainer: dict[str, Any] | None = None,
    max_time: str | None = None,
    max_epochs: int | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> TrainResult:
    """Train a potential; resumes from ``output/checkpoints/last.ckpt`` when a previous run was cut short.

    ``threads``: CPU threads of the run (None: one below 300 atoms a step, else the usable cores
    no other process is busy on); the caller's ``torch.get_num_threads()`` is restored after."""
    model = model or ModelConfig()
    fit = fit or FitConfig()
    run_dir = Path(output)
    run_dir.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, fit.dtype)
    with FrameReader(train) as reader:
        mean_atoms = float(reader.num_atoms.mean())
    if fit.batch_size is None:
        fit = replace(fit, batch_size=fit.resolved_batch_size(mean_atoms))  # the potential records the number
        if progress:
            print(f"gdlphys train: batch size {fit.batch_size} (about {ATOMS_PER_BATCH} atoms a step; frames hold {mean_atoms:.3g} on average)", file=sys.stderr)

    data = FramesDataModule(
        train, valid, cutoff=model.cutoff, batch_size=fit.batch_size, valid_batch_size=fit.valid_batch_size,
        valid_fraction=fit.valid_fraction, seed=fit.seed, num_workers=fit.num_workers, dtype=dtype,
    )
    data.setup("fit")
    sampled = len(data.train_set) > STATISTICS_FRAMES  # then a rare element may be missing from the sample
    statistics = compute_statistics(
        training_sample(data.train_set, fit.seed), species=training_elements(data.train_set) if sampled else None
    )
    if progress:
        print(f"gdlphys train: {len(data.train_set)} training / {len(data.valid_set)} validation frames; {statistics.summary()}", file=sys.stderr)
    task = PotentialTask(build_potential(model, statistics, fit.seed, dtype), fit)
    lightning_trainer = fit_task(task, data, run_dir, fit, trainer, max_time, max_epochs, progress, threads=threads,
                                 atoms_per_step=mean_atoms * fit.batch_size)

    metrics = {k: float(v) for k, v in lightning_trainer.callback_metrics.items() if k.startswith("val/")}
    metadata = {
        "train_file": str(Path(train).resolve()),
        "training_data_sha256": file_sha256(train),
        "valid_file": str(Path(valid).resolve()) if valid else None,
        "fit": fit.to_dict(),
        "epochs": int(lightning_trainer.current_epoch),
        "global_steps": int(lightning_trainer.global_step),
        "validation": metrics,
        "statistics": statistics.__dict__,
    }
    potential_path = run_dir / POTENTIAL_FILENAME
    if lightning_trainer.is_global_zero:  # one file, written once, under data-parallel training too
        save_potential(task.inference_potential, potential_path, metadata)
        plot_learning_curve(metrics_files(run_dir), run_dir / "learning_curve.png")
    return TrainResult(run_dir, potential_path, statistics, metrics, int(lightning_trainer.current_epoch))

"""``gdlphys train``: every model, fit and Lightning Trainer option from the command line or YAML."""

from __future__ import annotations

import os
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Optional

import lightning as L
from jsonargparse import ActionConfigFile, ArgumentParser

from gdlphys.cli.threads import set_threads
from gdlphys.models.config import ModelConfig
from gdlphys.train.config import FitConfig

# Trainer options that gdlphys sets itself (logging, checkpoints, progress) or exposes under another name.
TRAINER_SKIP = {
    "logger", "callbacks", "plugins", "default_root_dir", "enable_progress_bar", "enable_model_summary",
    "enable_checkpointing", "max_time", "max_epochs", "gradient_clip_val", "num_sanity_val_steps", "inference_mode",
}


# Data-parallel CPU training by default (docs/train.md "Both cores"): two processes of one thread
# each trained 1.45-1.9x the frames/s of one process with two threads on this 2-core machine, and
# on aspirin-xtb's 950 frames in 6 minutes reached 36.4 against 44.3 meV/Å test force MAE.
DDP_MIN_FRAMES = 200  # below this a run is a quick test, and a second process's start-up (~10 s) a large share of it
DDP_MAX_PROCESSES = 8  # beyond this on one CPU the all-reduce of every step starts to cost
DATA_PARALLEL_ENV = "GDLPHYS_DATA_PARALLEL"  # the first process's choice, inherited by the ranks Lightning starts
PARALLEL_KEYS = ("accelerator", "strategy", "devices", "num_nodes")


def _launched_as_command(argv: list[str]) -> bool:
    """This process is ``gdlphys train ...`` itself (Lightning's DDP re-runs the command line to start
    its ranks: from a script, a notebook or pytest that would re-run something else)."""
    name = Path(sys.argv[0]).name
    return name in ("gdlphys", "__main__.py") and len(argv) > 0 and sys.argv[-len(argv):] == argv


def data_parallel_default(trainer: dict, n_frames: int, argv: list[str], threads: int | None) -> tuple[dict, str | None]:
    """The trainer options with data-parallel CPU processes filled in where the user chose nothing:
    one process per idle core (at most DDP_MAX_PROCESSES), for DDP_MIN_FRAMES frames or more, no GPU,
    no --threads, launched as the command itself and not already under torchrun or SLURM.
    ``GDLPHYS_DATA_PARALLEL=N`` in the environment sets N (1: one process)."""
    if any(key in trainer for key in PARALLEL_KEYS) or threads is not None or not _launched_as_command(argv):
        return trainer, None
    chosen = os.environ.get(DATA_PARALLEL_ENV)
    if chosen is None:
        import torch

        from gdlphys.threads import IdleCores, usable_cores

        launched_elsewhere = any(key in os.environ for key in ("LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS"))
        if launched_elsewhere or n_frames < DDP_MIN_FRAMES or torch.cuda.is_available():
            return trainer, None
        chosen = str(min(IdleCores()(usable_cores()), DDP_MAX_PROCESSES))
        os.environ[DATA_PARALLEL_ENV] = chosen  # the ranks Lightning starts inherit the choice
    try:
        processes = int(chosen)
    except ValueError:
        raise ValueError(f"{DATA_PARALLEL_ENV} must be a whole number of processes, got {chosen!r}") from None
    if processes < 2:
        return trainer, None
    note = (f"gdlphys train: {processes} data-parallel processes of one thread each on the idle cores (faster than "
            "threads on a CPU; each takes its share of the frames at the batch size above); --trainer.devices 1 for one process")
    return {**trainer, "accelerator": "cpu", "strategy": "ddp", "devices": processes}, note


def register(sub) -> None:
    sub.add_parser(
        "train", help="train a potential on HDF5 frames (see gdlphys train --help)", add_help=False
    ).set_defaults(handler=run)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="gdlphys train",
        description=(
            "Train an equivariant potential. Options come from --config YAML files (sections model:, fit:, "
            "trainer:) and the command line; an unknown or mistyped option fails before training starts. "
            "A RUN_DIR holding a checkpoint is resumed."
        ),
        default_env=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below")
    parser.add_argument("--train", type=str, required=True, help="training frames (HDF5)")
    parser.add_argument("--valid", type=Optional[str], default=None, help="validation frames (default: fit.valid_fraction of --train)")
    parser.add_argument("--max-time", type=Optional[str], default=None, help="wall-clock budget, e.g. 15m, 1h30m")
    parser.add_argument("--max-epochs", type=Optional[int], default=None, help="epoch budget (default 100 without --max-time)")
    parser.add_argument("-o", "--output", type=str, required=True, help="RUN_DIR: potential.pt, checkpoints, metrics, plots")
    parser.add_argument("--quiet", type=bool, default=False, help="no progress output")
    parser.add_argument("--threads", type=Optional[int], default=None, help="CPU threads (default: 1 below 300 atoms a step, else the usable cores no other process is busy on)")
    parser.add_class_arguments(ModelConfig, "model")
    parser.add_class_arguments(FitConfig, "fit")
    parser.add_class_arguments(L.Trainer, "trainer", skip=TRAINER_SKIP, fail_untyped=False, sub_configs=True)
    return parser


def changed_options(parser: ArgumentParser, values: dict, group: str) -> dict:
    """Options of ``group`` the user changed from the parser's defaults (the rest keep their own)."""
    defaults = parser.get_defaults()[group].as_dict()
    return {k: v for k, v in values.items() if defaults.get(k) != v}


def run(argv: list[str]) -> int:
    parser = build_parser()
    parser.exit_on_error = False  # one clear line instead of a page of usage
    try:
        cfg = parser.parse_args(argv)
    except ArgumentError as err:
        reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"gdlphys train: error: {reason} (see gdlphys train --help)", file=sys.stderr)
        return 2
    model = ModelConfig(**cfg.model.as_dict())
    fit = FitConfig(**cfg.fit.as_dict())
    trainer = changed_options(parser, cfg.trainer.as_dict(), "trainer")

    import torch

    from gdlphys.data.hdf5 import FrameReader
    from gdlphys.io_utils import atomic_write
    from gdlphys.train.run import train_potential

    for data_file in filter(None, (cfg.train, cfg.valid)):
        FrameReader(data_file).close()  # a missing or broken data file fails before the RUN_DIR is made
    with FrameReader(cfg.train) as reader:
        mean_atoms = float(reader.num_atoms.mean())
        n_frames = len(reader)
    trainer, note = data_parallel_default(trainer, n_frames, argv, cfg.threads)
    set_threads(cfg.threads if note is None else 1, mean_atoms * fit.resolved_batch_size(mean_atoms))
    from lightning.pytorch.utilities import rank_zero_only

    if note and not cfg.quiet and rank_zero_only.rank == 0 and "LOCAL_RANK" not in os.environ:
        print(note, file=sys.stderr)
    run_dir = Path(cfg.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # data-parallel ranks run this command too
        with atomic_write(run_dir / "config.yaml") as tmp:
            Path(tmp).write_text(parser.dump(cfg))
    result = train_potential(
        cfg.train, run_dir, cfg.valid, model=model, fit=fit, trainer=trainer,
        max_time=cfg.max_time, max_epochs=cfg.max_epochs, progress=not cfg.quiet, threads=torch.get_num_threads(),
    )
    if rank_zero_only.rank != 0:
        return 0
    m = result.metrics
    print(
        f"trained {result.epochs} epochs; validation: energy MAE {1000 * m.get('val/energy_per_atom_mae', float('nan')):.2f} meV/atom, "
        f"force MAE {1000 * m.get('val/forces_mae', float('nan')):.1f} meV/Å\npotential: {result.potential_path}",
        file=sys.stderr,
    )
    return 0

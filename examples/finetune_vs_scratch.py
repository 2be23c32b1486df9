"""Fine-tuning vs training from scratch on new chemistry with an element the start potential lacks.

For each training-set size (default 50, 100, 200 frames drawn evenly from --new-train), two
runs with the same training-time budget and the same architecture (the start potential's):

- finetune: ``gdlphys finetune``'s defaults (new element grown in, reference energies refitted,
  replay, anchor, lower learning rate; see gdlphys/train/finetune.py);
- scratch: a fresh potential trained as ``gdlphys train`` would at its defaults (``--scratch
  defaults``: default architecture and fit options), or with the start potential's architecture
  and recorded fit options (``--scratch parent``: the same network, learning from nothing).

Along the way (time spent measuring is not counted against the budget) it records the force
MAE on the new-chemistry test set, the validation set and the original domain, then writes
RUN/comparison.json, RUN/learning_curves.png (curves side by side per size) and a table.

    OMP_NUM_THREADS=1 .venv/bin/python examples/finetune_vs_scratch.py -o runs/ft-vs-scratch
    # the shipped defaults: ethanol-xtb (H C O) -> datasets/nitrogen-xtb (every molecule has N)
    .venv/bin/python examples/finetune_vs_scratch.py --potential organic-xtb \\
        --original-data datasets/nci-xtb/train.h5 --original-test datasets/nci-xtb/test.h5 \\
        --new-train P.h5 --new-valid P-valid.h5 --new-test P-test.h5 -o runs/organic-p

``--clock cpu`` counts the process's CPU time instead of wall-clock time: the fair budget on a
machine whose cores other jobs share (with one thread, CPU time is the wall time of an idle core).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.data.datamodule import FramesDataModule, GraphDataset
from gdlphys.data.hdf5 import FrameReader
from gdlphys.models.config import ModelConfig
from gdlphys.models.files import load_potential
from gdlphys.models.potential import UnknownElementError
from gdlphys.train import finetune as ft
from gdlphys.train.run import build_potential, parse_duration
from gdlphys.train.statistics import compute_statistics
from gdlphys.train.system import PotentialTask

ROOT = Path(__file__).resolve().parent.parent
NEW = ROOT / "datasets" / "nitrogen-xtb"
OLD = ROOT / "datasets" / "ethanol-xtb"


def probe_errors(potential, dataset) -> dict | None:
    """Errors on ``dataset``, or None where it holds an element the potential does not know (a
    potential trained from scratch on the new data alone knows none of the original domain's others)."""
    try:
        return ft.dataset_errors(potential, dataset)
    except UnknownElementError:
        return None


def mae(errors: dict | None) -> float:
    return errors["forces_mae"] if errors else math.nan


class BudgetAndCurve(Timer):
    """Stops training after ``seconds`` of training time and records learning curves.

    After every validation: the validation force MAE; every ``budget / points`` seconds (and
    at the end) also the errors on the ``probes`` datasets. Probing time is not counted.
    It is Lightning's ``Timer`` with this clock, so the cosine schedule and the second stage
    follow the budget as they do under ``--max-time``."""

    def __init__(self, seconds: float, clock: str, points: int, probes: dict[str, object]) -> None:
        super().__init__(duration=timedelta(seconds=float(seconds)), interval="step", verbose=False)
        self.seconds, self.points, self.probes = float(seconds), int(points), probes
        self.now = time.process_time if clock == "cpu" else time.perf_counter
        self.t0 = self.excluded = 0.0
        self.wall0 = self.wall_excluded = 0.0  # the wall clock too, whichever clock the budget counts
        self.next_probe = 0.0
        self.curve: list[dict] = []

    def elapsed(self) -> float:
        return self.now() - self.t0 - self.excluded

    def time_elapsed(self, stage: str = "train") -> float:
        return self.elapsed() if stage == "train" else 0.0

    def on_fit_start(self, trainer, *args, **kwargs) -> None:
        pass  # the clock starts with training (on_train_start)

    def on_train_end(self, trainer, pl_module) -> None:
        pass

    def wall(self) -> float:
        return time.perf_counter() - self.wall0 - self.wall_excluded

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0, self.excluded = self.now(), 0.0
        self.wall0, self.wall_excluded = time.perf_counter(), 0.0
        self.probe(trainer, pl_module, validation=None)  # the starting point, at t = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.elapsed() >= self.seconds:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get("val/forces_mae")
        point = {"time_s": self.elapsed(), "wall_s": self.wall(), "epoch": trainer.current_epoch, "step": trainer.global_step,
                 "valid_forces_mae": float(value) if value is not None else math.nan}
        if point["time_s"] >= self.next_probe or trainer.should_stop:
            self.probe(trainer, pl_module, validation=point)
        else:
            self.curve.append(point)

    def probe(self, trainer, pl_module, validation: dict | None) -> None:
        started, wall_started = self.now(), time.perf_counter()
        point = validation or {"time_s": 0.0, "wall_s": 0.0, "epoch": 0, "step": 0, "valid_forces_mae": math.nan}
        for name, dataset in self.probes.items():
            point[f"{name}_forces_mae"] = mae(probe_errors(pl_module.inference_potential, dataset))
        self.curve.append(point)
        self.next_probe = point["time_s"] + self.seconds / self.points
        self.excluded += self.now() - started
        self.wall_excluded += time.perf_counter() - wall_started


def run_budgeted(task, data, seconds: float, clock: str, points: int, probes: dict, run_dir: Path) -> tuple[BudgetAndCurve, L.Trainer]:
    budget = BudgetAndCurve(seconds, clock, points, probes)
    trainer = L.Trainer(
        default_root_dir=run_dir, accelerator="cpu", devices=1, max_epochs=-1, callbacks=[budget],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, inference_mode=False, gradient_clip_val=task.fit.grad_clip or None,
    )
    trainer.fit(task, datamodule=data)
    return budget, trainer


def subset_file(source: Path, n: int, output: Path) -> Path:
    """``n`` frames spread evenly over ``source`` (every molecule and the whole trajectory)."""
    with FrameReader(source) as reader:
        total = len(reader)
    if n > total:
        raise ValueError(f"{source} holds {total} frames, fewer than {n}")
    indices = np.unique(np.round(np.linspace(0, total - 1, n)).astype(int)).tolist()
    output.parent.mkdir(parents=True, exist_ok=True)
    with FrameReader(source) as reader:
        provenance = {"method": reader.attrs.get("method"), "software": reader.attrs.get("software")}
    write_hdf5(output, read_hdf5(source, index=indices), **provenance, attrs={"subset_of": str(source)})
    return output


def molecules(path: Path) -> list[str]:
    with FrameReader(path) as reader:
        return sorted({reader.smiles(k) or "?" for k in range(len(reader))})


def finetune_run(args, train: Path, run_dir: Path, probes: dict) -> dict:
    config = ft.FinetuneConfig(
        replay_fraction=args.replay_fraction, replay_weight=args.replay_weight, replay_labels=args.replay_labels,
        freeze=None if args.freeze in (None, "none") else args.freeze, old_lr_factor=args.old_lr_factor,
        anchor_weight=args.anchor, anchor=args.anchor_kind, new_element_init=args.new_element_init,
        old_lr_warmup=args.old_lr_warmup, max_forgetting=args.max_forgetting,
    )
    started = time.perf_counter()
    setup = ft.prepare_finetune(
        args.potential, train, run_dir, valid=args.new_valid, replay=args.original_data,
        original_test=args.original_test, config=config, fit=finetune_fit(args), progress=False,
    )
    setup_seconds = time.perf_counter() - started
    budget, trainer = run_budgeted(setup.task, setup.data, args.seconds, args.clock, args.curve_points, probes, run_dir)
    return {
        "config": config.to_dict(), "fit": setup.task.fit.to_dict(),
        "replay": {**setup.replay.to_dict(), "frames_per_epoch": setup.data.replay_per_epoch,
                   "pool_frames": len(setup.data.replay_set or [])},
        "reference_energies": setup.refit.to_dict() if setup.refit else None, "setup_wall_seconds": setup_seconds,
        **outcome(budget, trainer, setup.task, probes),
    }


def scratch_run(args, train: Path, run_dir: Path, probes: dict) -> dict:
    started = time.perf_counter()
    if args.scratch == "parent":
        parent = load_potential(args.potential)
        fit, model = ft.FitConfig(**{**ft.recorded_fit(parent).to_dict(), "seed": args.seed}), parent.config
    else:  # what `gdlphys train --train FRAMES` does
        fit, model = ft.FitConfig(seed=args.seed), ModelConfig()
    dtype = getattr(torch, fit.dtype)
    with FrameReader(train) as reader:
        batch_size = fit.resolved_batch_size(float(reader.num_atoms.mean()))
    data = FramesDataModule(train, args.new_valid, cutoff=model.cutoff, batch_size=batch_size,
                            valid_batch_size=fit.valid_batch_size, seed=fit.seed, dtype=dtype)
    data.setup("fit")
    statistics = compute_statistics(data.train_set[i] for i in range(len(data.train_set)))
    task = PotentialTask(build_potential(model, statistics, fit.seed, dtype), fit)
    setup_seconds = time.perf_counter() - started
    budget, trainer = run_budgeted(task, data, args.seconds, args.clock, args.curve_points, probes, run_dir)
    return {"fit": fit.to_dict(), "setup_wall_seconds": setup_seconds, **outcome(budget, trainer, task, probes)}


def finetune_fit(args) -> ft.FitConfig:
    fit = ft.default_finetune_fit(load_potential(args.potential)).to_dict()
    if args.lr is not None:
        fit["lr"] = args.lr
    if args.lr_schedule is not None:
        fit["lr_schedule"] = args.lr_schedule
    if args.batch_size is not None:
        fit["batch_size"] = args.batch_size
    return ft.FitConfig(**{**fit, "seed": args.seed})


def outcome(budget: BudgetAndCurve, trainer: L.Trainer, task, probes: dict) -> dict:
    final = {name: probe_errors(task.inference_potential, dataset) for name, dataset in probes.items()}
    return {"train_seconds": budget.curve[-1]["time_s"], "train_wall_seconds": budget.curve[-1]["wall_s"], "epochs": trainer.current_epoch, "steps": trainer.global_step,
            "final": final, "curve": budget.curve}


def plot(results: dict, output: Path) -> None:
    from gdlphys.figures import save_figure, subplots

    sizes = sorted({r["size"] for r in results["runs"]})
    fig, axes = subplots(2, len(sizes), figsize=(4.6 * len(sizes), 7), squeeze=False, sharex=True)
    colours = {"finetune": "tab:blue", "scratch": "tab:orange"}
    for column, size in enumerate(sizes):
        top, bottom = axes[0, column], axes[1, column]
        for run in (r for r in results["runs"] if r["size"] == size):
            c, label = colours[run["method"]], run["method"]
            probed = [p for p in run["curve"] if "test_forces_mae" in p]
            top.plot([p["time_s"] for p in probed], [1000 * p["test_forces_mae"] for p in probed], "o-", color=c, label=f"{label}: test")
            valid = [p for p in run["curve"] if not math.isnan(p["valid_forces_mae"])]
            top.plot([p["time_s"] for p in valid], [1000 * p["valid_forces_mae"] for p in valid], "--", color=c, lw=0.8, alpha=0.7, label=f"{label}: valid")
            if run["method"] == "finetune":
                bottom.plot([p["time_s"] for p in probed], [1000 * p["original_forces_mae"] for p in probed], "o-", color=c, label="fine-tuned")
        parent = 1000 * results["parent_original_forces_mae"]
        bottom.axhline(parent, color="k", lw=0.8, label="start potential")
        bottom.axhline(1.2 * parent, color="tab:red", ls=":", label="+20 %")
        top.set_yscale("log")
        top.set_title(f"{size} new training frames")
        top.set_ylabel("new chemistry: force MAE (meV/Å)")
        bottom.set_ylabel("original domain: force MAE (meV/Å)")
        bottom.set_xlabel(f"training time ({results['clock']}, s)")
        top.legend(fontsize=7)
        bottom.legend(fontsize=7)
    fig.suptitle(f"{results['potential']} fine-tuned vs from scratch, same budget ({results['budget']})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, output)


def table(results: dict) -> str:
    parent = results["parent_original_forces_mae"]
    lines = [f"{'size':>5} {'method':<9} {'new test':>9} {'unseen':>8} {'original':>9} {'rise':>7} {'epochs':>6}  (force MAE, meV/Å)"]
    for run in results["runs"]:
        final = run["final"]
        unseen = 1000 * mae(final.get("unseen"))
        original = mae(final["original"])
        lines.append(f"{run['size']:>5} {run['method']:<9} {1000 * mae(final['test']):>9.1f} {unseen:>8.1f} "
                     f"{1000 * original:>9.1f} {100 * (original / parent - 1):>+6.0f}% {run['epochs']:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--potential", default="ethanol-xtb", help="start potential (shipped name, file or run folder)")
    p.add_argument("--original-data", default=None, help="its training data, replayed (default: found by the hash the potential records)")
    p.add_argument("--original-test", default=str(OLD / "test.h5"), help="original-domain test frames (forgetting)")
    p.add_argument("--new-train", default=str(NEW / "train.h5"), help="pool of new-chemistry training frames")
    p.add_argument("--new-valid", default=str(NEW / "valid.h5"))
    p.add_argument("--new-test", default=str(NEW / "test.h5"))
    p.add_argument("--new-unseen", default=str(NEW / "unseen.h5"), help="new-chemistry molecules in no training set ('' to skip)")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--methods", nargs="+", choices=["finetune", "scratch"], default=["finetune", "scratch"])
    p.add_argument("--scratch", choices=["defaults", "parent"], default="defaults",
                   help="scratch runs at gdlphys train's defaults, or with the start potential's architecture and fit")
    p.add_argument("--budget", default="3m", help="training time per run, e.g. 3m or 90s")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what the budget counts (see above)")
    p.add_argument("--curve-points", type=int, default=8, help="test-set probes per run")
    defaults = ft.FinetuneConfig()
    p.add_argument("--replay-fraction", type=float, default=defaults.replay_fraction)
    p.add_argument("--replay-weight", type=float, default=defaults.replay_weight)
    p.add_argument("--replay-labels", choices=["auto", "data", "parent"], default=defaults.replay_labels)
    p.add_argument("--freeze", default=defaults.freeze)
    p.add_argument("--old-lr-factor", type=float, default=defaults.old_lr_factor)
    p.add_argument("--anchor", type=float, default=defaults.anchor_weight)
    p.add_argument("--anchor-kind", choices=list(ft.ANCHOR_KINDS), default=defaults.anchor)
    p.add_argument("--old-lr-warmup", type=int, default=defaults.old_lr_warmup)
    p.add_argument("--max-forgetting", type=lambda t: None if t.lower() == "none" else float(t), default=defaults.max_forgetting)
    p.add_argument("--new-element-init", choices=["analogue", "mean"], default=defaults.new_element_init)
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: gdlphys finetune's)")
    p.add_argument("--lr-schedule", choices=["plateau", "cosine"], default=None, help="fine-tuning LR schedule (default: gdlphys finetune's)")
    p.add_argument("--batch-size", type=int, default=None, help="fine-tuning frames per step (default: gdlphys finetune's: the parent's recorded size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    args.seconds = parse_duration(args.budget).total_seconds()
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)

    parent = load_potential(args.potential)
    probes = {"test": GraphDataset(args.new_test, parent.cutoff, torch.float32),
              "original": GraphDataset(args.original_test, parent.cutoff, torch.float32)}
    if args.new_unseen:
        probes["unseen"] = GraphDataset(args.new_unseen, parent.cutoff, torch.float32)
    parent_original = ft.dataset_errors(parent.float(), probes["original"])["forces_mae"]
    results = {
        "potential": str(args.potential), "scratch": args.scratch, "budget": args.budget, "clock": args.clock, "sizes": args.sizes,
        "new_data": {"train": args.new_train, "valid": args.new_valid, "test": args.new_test, "unseen": args.new_unseen or None,
                     "train_molecules": molecules(Path(args.new_train)), "test_molecules": molecules(Path(args.new_test)),
                     "unseen_molecules": molecules(Path(args.new_unseen)) if args.new_unseen else []},
        "original_test": args.original_test, "parent_original_forces_mae": parent_original, "runs": [],
    }
    print(f"start potential on the original domain: force MAE {1000 * parent_original:.1f} meV/Å", file=sys.stderr)
    started = time.perf_counter()
    for size in args.sizes:
        train = subset_file(Path(args.new_train), size, args.output / "data" / f"train-{size}.h5")
        for method in args.methods:
            run_dir = args.output / "runs" / f"{method}-{size}"
            run = (finetune_run if method == "finetune" else scratch_run)(args, train, run_dir, probes)
            results["runs"].append({"method": method, "size": size, **run})
            final = run["final"]
            print(f"{method:>8} {size:>4} frames: new test {1000 * mae(final['test']):.1f}, original "
                  f"{1000 * mae(final['original']):.1f} meV/Å ({run['epochs']} epochs, {time.perf_counter() - started:.0f} s so far)",
                  file=sys.stderr)
            (args.output / "comparison.json").write_text(json.dumps(results, indent=1))
    results["wall_seconds"] = time.perf_counter() - started
    (args.output / "comparison.json").write_text(json.dumps(results, indent=1))
    plot(results, args.output / "learning_curves.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train MACE (mace-torch's own ``mace_run_train``) within a wall-clock budget or for fixed epochs.

Runs in the peer environment (never imports gdlphys). The training itself is
mace-torch's, unchanged; this wrapper only decides how many epochs fit the budget:

* ``--budget-s B``: stage one runs until 75 % of B has passed, stage two (its loss
  weights and learning rate, MACE's own schedule share) fills the rest. Epoch counts
  are decided from the measured epoch times, between calls of ``mace.tools.train``, so
  the run adapts to the machine's speed, and the last epoch of each stage stops at its
  deadline after the batch in flight, as Lightning's ``max_time`` stops gdlphys; MACE's
  final evaluation and model export come after the budget, as gdlphys's export does.
  ``mace.tools.train`` is called several times in a row, each call going on from the
  epoch the last one reached with the same model, optimiser, schedules, EMA and SWA
  objects; each call starts with a validation pass and its own best-loss record.
* ``--epochs E``: exactly E epochs (no stage two), e.g. for throughput or for a model
  of the right architecture (``--epochs 0``: initialised, E0s and scale fitted, untrained).

Prints one JSON object on the last line of stdout and writes it to ``--result``.

    python mace_train.py --train train.xyz --valid valid.xyz --work-dir DIR --budget-s 900 --result out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import types
from pathlib import Path


def mace_arguments(args: argparse.Namespace, max_epochs: int, start_swa: int | None) -> list[str]:
    """The MACE configuration of the benchmark (issue 6): 32 channels, L = 1, max_ell 3, correlation 3."""
    argv = [
        "--name", args.name,
        "--seed", str(args.seed),
        "--work_dir", str(args.work_dir),
        "--model_dir", str(args.work_dir),
        "--checkpoints_dir", str(args.work_dir / "checkpoints"),
        "--train_file", str(args.train),
        "--valid_file", str(args.valid),
        "--energy_key", "REF_energy",
        "--forces_key", "REF_forces",
        "--E0s", "average",
        "--model", "MACE",
        "--num_channels", str(args.channels),
        "--max_L", str(args.max_L),
        "--max_ell", "3",
        "--correlation", "3",
        "--num_interactions", "2",
        "--r_max", str(args.r_max),
        "--default_dtype", "float32",
        "--batch_size", str(args.batch_size),
        "--valid_batch_size", str(args.batch_size),
        "--max_num_epochs", str(max_epochs),
        "--patience", str(10**9),
        "--eval_interval", "1",
        "--ema", "--ema_decay", "0.99",
        "--error_table", "PerAtomMAE",
        "--device", args.device,
        "--plot", "False",
        "--save_cpu",
    ]
    if start_swa is not None:
        argv += ["--swa", "--start_swa", str(start_swa)]
    return argv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--valid", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--name", default="mace")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-s", type=float, help="wall-clock budget of the training loop, seconds")
    budget.add_argument("--epochs", type=int, help="exactly this many epochs, no stage two")
    parser.add_argument("--stage-two-fraction", type=float, default=0.25, help="share of the budget for stage two")
    parser.add_argument("--batch-size", type=int, default=10, help="MACE's default")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-L", dest="max_L", type=int, default=1)
    parser.add_argument("--r-max", dest="r_max", type=float, default=5.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (args.work_dir / "checkpoints").mkdir(parents=True, exist_ok=True)  # MACE saves there even after 0 epochs

    import mace
    import torch
    from mace import tools
    from mace.cli import run_train

    train_module = sys.modules["mace.tools.train"]
    original_train = train_module.train
    original_epoch = train_module.train_one_epoch
    epoch_log: list[dict] = []  # one entry per training epoch: index, seconds (data + steps), cut short
    loop: dict = {"stop_at": float("inf")}  # batches stop at this perf_counter() time, as Lightning's max_time

    def until_stop(loader):
        for batch in loader:
            if time.perf_counter() >= loop["stop_at"]:
                return
            yield batch

    def timed_epoch(*a, **kw):
        start = time.perf_counter()
        original_epoch(*a, **{**kw, "data_loader": until_stop(kw["data_loader"])})
        cut = time.perf_counter() >= loop["stop_at"]
        epoch_log.append({"epoch": int(kw["epoch"]), "seconds": time.perf_counter() - start, "cut": cut})
        print(f"mace epoch {kw['epoch']}: {epoch_log[-1]['seconds']:.1f} s{' (cut at the deadline)' if cut else ''}", file=sys.stderr, flush=True)

    def budgeted_train(*a, **kw):
        """mace.tools.train, called in pieces so that its epochs fill the budget."""
        start = time.perf_counter()
        swa, handler = kw.get("swa"), kw["checkpoint_handler"]
        if args.budget_s is None:
            original_train(*a, **kw)
        else:
            deadline_one = start + (1.0 - args.stage_two_fraction) * args.budget_s
            deadline = start + args.budget_s
            epoch = 0

            def run_until(end_epoch: int) -> None:
                nonlocal epoch
                t, logged = time.perf_counter(), len(epoch_log)
                original_train(*a, **{**kw, "start_epoch": epoch, "max_num_epochs": end_epoch})
                if not any(e["cut"] for e in epoch_log[logged:]):  # a cut epoch would make epochs look short
                    loop["per_epoch_s"] = (time.perf_counter() - t) / (end_epoch - epoch)  # validation included
                epoch = end_epoch

            def fill(until: float) -> None:
                """Calls of at most about a sixth of the budget each, re-timed after every call;
                the last epoch is cut at ``until``. At least one call: MACE's final evaluation
                needs a checkpoint of each stage (with no time left, stage two is one validation)."""
                loop["stop_at"] = until
                while True:
                    per_epoch = loop.get("per_epoch_s", args.budget_s)
                    n = math.ceil((until - time.perf_counter()) / per_epoch)
                    run_until(epoch + max(1, min(n, int(args.budget_s / 6 / per_epoch))))
                    if time.perf_counter() >= until:
                        return

            fill(deadline_one)
            # Stage two starts at whatever epoch stage one reached. mace.tools.train steps the
            # SWA schedule only after a call's first epoch: step it here, as a single call would.
            swa.start = handler.io.swa_start = loop["stage_two_start"] = epoch
            swa.scheduler.step()
            fill(deadline)
        loop["train_loop_s"] = time.perf_counter() - start

    def no_compile(*a, **kw):  # skip the TorchScript export: not used here, and slow on CPU
        raise RuntimeError("compiled export skipped by the benchmark")

    tools.train = budgeted_train
    train_module.train_one_epoch = timed_epoch
    run_train.jit = types.SimpleNamespace(compile=no_compile)

    if args.budget_s is not None:
        # placeholders: the real epoch counts are set between calls of mace.tools.train
        argv = mace_arguments(args, max_epochs=10**9, start_swa=10**9 - 1)
    else:
        argv = mace_arguments(args, max_epochs=args.epochs, start_swa=None)
    t0 = time.perf_counter()
    run_train.run(tools.build_default_arg_parser().parse_args(argv))
    total = time.perf_counter() - t0

    stage_two = args.work_dir / f"{args.name}_stagetwo.model"
    stage_one = args.work_dir / f"{args.name}.model"
    result = {
        "code": "mace-torch",
        "version": mace.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "epochs": len(epoch_log),
        "stage_two_start": loop.get("stage_two_start"),
        "train_loop_s": loop.get("train_loop_s"),
        "process_s": total,
        "epoch_seconds": [e["seconds"] for e in epoch_log],
        "epochs_cut": sum(e["cut"] for e in epoch_log),
        "model": str(stage_two if stage_two.is_file() else stage_one),
        "batch_size": args.batch_size,
        "argv": argv,
    }
    if args.budget_s is not None and result["train_loop_s"] is not None:
        result["budget_s"] = args.budget_s
        result["over_budget_s"] = max(0.0, result["train_loop_s"] - args.budget_s)
    args.result.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``gdlphys finetune``: a trained potential + new frames -> a fine-tuned potential (new elements,
refitted reference energies, replay, frozen layers), with before/after errors on both domains."""

from __future__ import annotations

import sys


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        import argparse

        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a potential on new frames (new elements, new level of theory)",
        description=(
            "Fine-tune a potential: elements it lacks are added without changing its predictions for "
            "the others, reference energies are refitted on the new data by least squares, a fraction "
            "of replayed original frames limits forgetting, and the error on the new data and on the "
            "original domain is reported (and plotted to RUN_DIR/forgetting.png) before and after."
        ),
    )
    p.add_argument("potential", help="shipped name, potential file or RUN_DIR to start from")
    p.add_argument("--train", required=True, help="new training frames (HDF5)")
    p.add_argument("--valid", default=None, help="new validation frames (default: --valid-fraction of --train)")
    p.add_argument("--replay", default=None, metavar="OLD.h5", help="frames of the original training data to mix in")
    p.add_argument("--replay-fraction", type=_fraction, default=0.2, help="share of replay frames in the training set (default 0.2)")
    p.add_argument("--original-test", default=None, help="frames of the original domain to measure forgetting on "
                   "(default: the replay frames not used for training)")
    p.add_argument("--freeze", default=None, metavar="SPEC", help="parts to keep fixed, e.g. embedding,interaction.0 "
                   "(also: interaction, readout, scale_shift, or a parameter-name prefix)")
    p.add_argument("--max-time", default=None, help="wall-clock budget, e.g. 15m")
    p.add_argument("--max-epochs", type=int, default=None, help="epoch budget (default 100 without --max-time)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 10x below gdlphys train's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--no-refit", action="store_true", help="keep the reference energies (same level of theory, and you are sure)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: cpu, gpu, auto")
    p.add_argument("-o", "--output", required=True, help="RUN_DIR: potential.pt, finetune.json, forgetting.png, checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=run)


def run(args) -> int:
    from gdlphys.data.hdf5 import FrameReader
    from gdlphys.models.files import load_potential
    from gdlphys.train.config import FitConfig
    from gdlphys.train.finetune import default_finetune_fit, finetune_potential, format_errors, frozen_parameter_names

    parent = load_potential(args.potential)  # a wrong name or freeze spec fails before anything runs
    frozen_parameter_names(parent, args.freeze)
    for data_file in filter(None, (args.train, args.valid, args.replay, args.original_test)):
        FrameReader(data_file).close()
    defaults = default_finetune_fit()
    fit = FitConfig(
        **{**defaults.to_dict(), "lr": args.lr if args.lr is not None else defaults.lr, "batch_size": args.batch_size,
           "valid_fraction": args.valid_fraction, "seed": args.seed, "dtype": args.dtype}
    )
    result = finetune_potential(
        parent, args.train, args.output, valid=args.valid, replay=args.replay,
        replay_fraction=args.replay_fraction, original_test=args.original_test, freeze=args.freeze, fit=fit,
        trainer={"accelerator": args.accelerator}, max_time=args.max_time, max_epochs=args.max_epochs,
        refit_reference=not args.no_refit, progress=not args.quiet,
    )
    print(f"fine-tuned {result.epochs} epochs\n{format_errors(result.errors)}\npotential: {result.potential_path}", file=sys.stderr)
    return 0

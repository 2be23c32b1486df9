"""``gdlphys finetune``: a trained potential + new frames -> a fine-tuned potential (new elements,
refitted reference energies, weighted replay, frozen layers), with before/after errors on both domains."""

from __future__ import annotations

import argparse
import sys


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _optional_positive(text: str) -> float | None:
    if text.strip().lower() in ("none", "off"):
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 or 'none', got {text}")
    return value


def register(sub) -> None:
    from gdlphys.train.finetune import ANCHOR_KINDS, FINETUNE_LR_FACTOR, FinetuneConfig

    defaults = FinetuneConfig()
    p = sub.add_parser(
        "finetune", help="fine-tune a potential on new frames (new elements, new level of theory)",
        description=(
            "Fine-tune a potential: elements it lacks are added without changing its predictions for "
            "the others, reference energies are refitted on the new data by least squares, replayed "
            "original-domain frames (the parent's training data when it can be found) limit forgetting, "
            "and the error on the new data and on the original domain is reported (and plotted to "
            "RUN_DIR/forgetting.png) before and after."
        ),
    )
    p.add_argument("potential", help="shipped name, potential file or RUN_DIR to start from")
    p.add_argument("--train", required=True, help="new training frames (HDF5)")
    p.add_argument("--valid", default=None, help="new validation frames (default: --valid-fraction of --train)")
    p.add_argument("--replay", default=None, metavar="OLD.h5", help="original-domain frames to rehearse (default: the "
                   "parent's training data when the hash its file records finds it, else --original-test structures "
                   "labelled by the parent)")
    p.add_argument("--replay-fraction", type=_fraction, default=defaults.replay_fraction,
                   help="share of each epoch's training frames drawn from the replay frames (default %(default)s; 0: no replay)")
    p.add_argument("--replay-weight", type=float, default=defaults.replay_weight,
                   help="loss weight of a replayed frame relative to a new one (default %(default)s)")
    p.add_argument("--replay-labels", choices=["auto", "data", "parent"], default=defaults.replay_labels,
                   help="labels of the replay frames: the file's, or the parent potential's predictions "
                   "(auto: the file's where every frame has energy and forces)")
    p.add_argument("--original-test", default=None, help="frames of the original domain to measure forgetting on "
                   "(default: held-out replay frames)")
    p.add_argument("--freeze", default=defaults.freeze, metavar="SPEC", help="parts to keep fixed, e.g. "
                   "embedding,interaction.0 (also: interaction, readout, scale_shift, or a parameter-name prefix); "
                   "a new element's own entries in them still train")
    p.add_argument("--old-lr-factor", type=float, default=defaults.old_lr_factor, metavar="F",
                   help="the parent's weights take steps F times the new element's (default %(default)s; "
                   "0: only the new element's entries train, so nothing on the old elements can change)")
    p.add_argument("--anchor", type=float, default=defaults.anchor_weight, metavar="WEIGHT",
                   help="weight of the pull of the old weights towards the parent's (default %(default)s: off)")
    p.add_argument("--anchor-kind", choices=list(ANCHOR_KINDS), default=defaults.anchor,
                   help="sensitivity: weighted by how much the replayed frames' forces depend on each weight "
                   "(EWC-like; the penalty estimates the rise of their force MSE); uniform: mean squared change (L2-SP)")
    p.add_argument("--old-lr-warmup", type=int, default=defaults.old_lr_warmup, metavar="STEPS",
                   help="steps over which the parent's weights' learning rate ramps up from 0 "
                   f"(default {defaults.old_lr_warmup}; 0: none)")
    p.add_argument("--max-forgetting", type=_optional_positive, default=defaults.max_forgetting, metavar="F",
                   help="raise the replay weight whenever the original domain's force error rises by more than "
                   f"this fraction (default {defaults.max_forgetting:g}; 'none': a fixed weight)")
    p.add_argument("--new-element-init", choices=["analogue", "mean"], default=defaults.new_element_init,
                   help="where a new element's weights start: the average known element (default; "
                   "measured the better start) or a copy of the known element of its group (P from N)")
    p.add_argument("--max-time", default=None, help="wall-clock budget, e.g. 15m")
    p.add_argument("--max-epochs", type=int, default=None, help="epoch budget (default 100 without --max-time)")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default: {FINETUNE_LR_FACTOR:g} x the parent's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the parent's")
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
    from gdlphys.train.finetune import (
        FinetuneConfig,
        default_finetune_fit,
        finetune_potential,
        format_errors,
        frozen_parameter_names,
    )

    parent = load_potential(args.potential)  # a wrong name or option fails before anything runs
    freeze = None if (args.freeze or "").strip().lower() in ("", "none") else args.freeze
    frozen_parameter_names(parent, freeze)
    config = FinetuneConfig(
        replay_fraction=args.replay_fraction, replay_weight=args.replay_weight, replay_labels=args.replay_labels,
        freeze=freeze, old_lr_factor=args.old_lr_factor, anchor_weight=args.anchor, anchor=args.anchor_kind,
        refit_reference=not args.no_refit, new_element_init=args.new_element_init,
        old_lr_warmup=args.old_lr_warmup, max_forgetting=args.max_forgetting,
    )
    for data_file in filter(None, (args.train, args.valid, args.replay, args.original_test)):
        FrameReader(data_file).close()
    defaults = default_finetune_fit(parent)
    chosen = {"lr": args.lr, "batch_size": args.batch_size}
    fit = FitConfig(
        **{**defaults.to_dict(), **{k: v for k, v in chosen.items() if v is not None},
           "valid_fraction": args.valid_fraction, "seed": args.seed, "dtype": args.dtype}
    )
    result = finetune_potential(
        parent, args.train, args.output, valid=args.valid, replay=args.replay, original_test=args.original_test,
        config=config, fit=fit, trainer={"accelerator": args.accelerator}, max_time=args.max_time,
        max_epochs=args.max_epochs, progress=not args.quiet,
    )
    print(f"fine-tuned {result.epochs} epochs\n{format_errors(result.errors)}\npotential: {result.potential_path}", file=sys.stderr)
    return 0

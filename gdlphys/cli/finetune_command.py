"""``gdlphys finetune``: a trained potential + new frames -> a fine-tuned potential (new elements,
refitted reference energies, weighted replay, frozen layers), with before/after errors on both domains.

Options come from the typed configs, as ``gdlphys train``'s do: :class:`FinetuneConfig` at the top
level (``--replay_fraction``, ``--freeze``, ...), :class:`FitConfig` under ``fit.`` (unset ones
take the parent's recorded values) and Lightning's Trainer under ``trainer.``, from YAML
(``--config``) or the command line. The dashed spellings of earlier versions
(``--replay-fraction``, ``--lr``, ``--batch-size``, ``--no-refit``, ...) still work.
"""

from __future__ import annotations

import sys
from argparse import ArgumentError
from typing import Optional

from gdlphys.cli.threads import set_threads
from gdlphys.cli.train_command import TRAINER_SKIP, changed_options

# Earlier spellings -> the typed options' names (a flag without a value maps to its value).
_LEGACY = {
    "--anchor": "--anchor_weight", "--anchor-kind": "--anchor", "--lr": "--fit.lr", "--batch-size": "--fit.batch_size",
    "--valid-fraction": "--fit.valid_fraction", "--seed": "--fit.seed", "--dtype": "--fit.dtype",
    "--accelerator": "--trainer.accelerator", "--max-time": "--max_time", "--max-epochs": "--max_epochs",
    "--original-test": "--original_test",
}
_LEGACY_SWITCHES = {"--no-refit": ["--refit_reference", "false"], "--quiet": ["--quiet", "true"]}


def register(sub) -> None:
    sub.add_parser(
        "finetune", help="fine-tune a potential on new frames (new elements, new level of theory)", add_help=False
    ).set_defaults(handler=run)


def build_parser():
    import lightning as L
    from jsonargparse import ActionConfigFile, ArgumentParser

    from gdlphys.train.config import FitConfig
    from gdlphys.train.finetune import FinetuneConfig

    parser = ArgumentParser(
        prog="gdlphys finetune",
        description=(
            "Fine-tune a potential: elements it lacks are added without changing its predictions for "
            "the others, reference energies are refitted on the new data by least squares, replayed "
            "original-domain frames (the parent's training data when it can be found) limit forgetting, "
            "and the error on the new data and on the original domain is reported (and plotted to "
            "RUN_DIR/forgetting.png) before and after. Fit options left unset take the parent's values."
        ),
        default_env=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below")
    parser.add_argument("potential", type=str, help="shipped name, potential file or RUN_DIR to start from")
    parser.add_argument("--train", type=str, required=True, help="new training frames (HDF5)")
    parser.add_argument("--valid", type=Optional[str], default=None, help="new validation frames (default: fit.valid_fraction of --train)")
    parser.add_argument("--replay", type=Optional[str], default=None, help="original-domain frames to rehearse (default: the "
                        "parent's training data when the hash its file records finds it, else --original_test structures "
                        "labelled by the parent)")
    parser.add_argument("--original_test", type=Optional[str], default=None,
                        help="frames of the original domain to measure forgetting on (default: held-out replay frames)")
    parser.add_argument("--max_time", type=Optional[str], default=None, help="wall-clock budget, e.g. 15m")
    parser.add_argument("--max_epochs", type=Optional[int], default=None, help="epoch budget (default 100 without --max_time)")
    parser.add_argument("-o", "--output", type=str, required=True, help="RUN_DIR: potential.pt, finetune.json, forgetting.png, checkpoints")
    parser.add_argument("--quiet", type=bool, default=False, help="no progress output")
    parser.add_argument("--threads", type=Optional[int], default=None, help="CPU threads per process (default: 1 below 300 atoms "
                        "a step, else the usable cores no other process is busy on; 1 for each data-parallel process)")
    parser.add_class_arguments(FinetuneConfig, None)
    parser.add_class_arguments(FitConfig, "fit")
    parser.add_class_arguments(L.Trainer, "trainer", skip=TRAINER_SKIP, fail_untyped=False, sub_configs=True)
    return parser


def _modern(argv: list[str]) -> list[str]:
    """Earlier dashed spellings rewritten to the typed options' names."""
    out: list[str] = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in _LEGACY_SWITCHES:
            out.extend(_LEGACY_SWITCHES[name])
            continue
        if name in _LEGACY:
            name = _LEGACY[name]
        elif name.startswith("--") and "-" in name[2:] and "." not in name:
            name = "--" + name[2:].replace("-", "_")
        out.append(name + eq + value if eq else name)
    # "none"/"off" for max_forgetting: the typed option takes null
    return ["null" if prev == "--max_forgetting" and arg.lower() in ("none", "off") else arg
            for prev, arg in zip([""] + out[:-1], out)]


def run(argv: list[str]) -> int:
    parser = build_parser()
    parser.exit_on_error = False
    try:
        cfg = parser.parse_args(_modern(argv))
    except ArgumentError as err:
        reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"gdlphys finetune: error: {reason} (see gdlphys finetune --help)", file=sys.stderr)
        return 2

    from dataclasses import fields

    import torch

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

    parent = load_potential(cfg.potential)  # a wrong name or option fails before anything runs
    options = {f.name: cfg[f.name] for f in fields(FinetuneConfig)}
    if (options["freeze"] or "").strip().lower() in ("", "none"):
        options["freeze"] = None
    config = FinetuneConfig(**options)
    frozen_parameter_names(parent, config.freeze)
    for data_file in filter(None, (cfg.train, cfg.valid, cfg.replay, cfg.original_test)):
        FrameReader(data_file).close()
    fit = FitConfig(**{**default_finetune_fit(parent).to_dict(), **changed_options(parser, cfg.fit.as_dict(), "fit")})
    trainer = changed_options(parser, cfg.trainer.as_dict(), "trainer")
    with FrameReader(cfg.train) as reader:
        mean_atoms = float(reader.num_atoms.mean())
    several = str(trainer.get("strategy", "")).startswith("ddp") or (trainer.get("devices") not in (None, 1, "1", "auto"))
    set_threads(1 if several and cfg.threads is None else cfg.threads, mean_atoms * fit.resolved_batch_size(mean_atoms))
    result = finetune_potential(
        parent, cfg.train, cfg.output, valid=cfg.valid, replay=cfg.replay, original_test=cfg.original_test,
        config=config, fit=fit, trainer=trainer, max_time=cfg.max_time, max_epochs=cfg.max_epochs,
        progress=not cfg.quiet, threads=torch.get_num_threads(),
    )
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        return 0
    print(f"fine-tuned {result.epochs} epochs\n{format_errors(result.errors)}\npotential: {result.potential_path}", file=sys.stderr)
    return 0

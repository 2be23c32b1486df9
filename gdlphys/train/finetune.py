"""Fine-tuning: a trained potential -> new elements, refitted reference energies, replay,
frozen layers -> a fine-tuned potential, with the error on the new data and on the original
domain measured before and after (so forgetting is visible).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from torch.utils.data import ConcatDataset, Dataset, Subset

from gdlphys import keys
from gdlphys.data.datamodule import GraphDataset, file_sha256
from gdlphys.data.hdf5 import FrameReader
from gdlphys.io_utils import atomic_write
from gdlphys.models.files import POTENTIAL_FILENAME, load_potential, save_potential
from gdlphys.models.potential import Potential
from gdlphys.models.surgery import (
    ReferenceRefit,
    analogue_element,
    grow_species,
    refit_reference_energies,
    species_entry_masks,
)
from gdlphys.train.config import FitConfig
from gdlphys.train.finetune_report import (
    STAGES,
    dataset_errors,
    finetune_card,
    format_errors,
    plot_forgetting,
)
from gdlphys.train.finetune_config import (
    ANCHOR_KINDS,
    FINETUNE_LR_FACTOR,
    FinetuneConfig,
    default_finetune_fit,
    recorded_fit,
)
from gdlphys.train.finetune_task import FinetuneTask, force_sensitivity
from gdlphys.train.plots import plot_learning_curve
from gdlphys.train.replay import (
    ReplayDataModule,
    ReplaySource,
    level_of_theory,
    resolve_replay,
)
from gdlphys.train.run import fit_task, metrics_files

__all__ = [
    "STAGES", "FinetuneConfig", "FinetuneResult", "FinetuneSetup", "dataset_errors", "default_finetune_fit", "finetune_card",
    "finetune_potential", "format_errors", "frozen_parameter_names", "plot_forgetting", "prepare_finetune",
    "recorded_fit", "ANCHOR_KINDS", "FINETUNE_LR_FACTOR",
]

FORGETTING_MONITOR_FRAMES = 32  # original-domain frames measured after each validation (max_forgetting)
REFIT_REPLAY_FRAMES = 500  # replay frames that join the reference-energy refit (same level of theory)


@dataclass
class FinetuneResult:
    run_dir: Path
    potential_path: Path
    new_species: list[int]
    reference_energies: dict[str, Any]  # the refit: species, old, new, residuals
    errors: dict[str, dict[str, dict[str, float]]]  # domain ("new", "original") -> stage -> metrics
    frozen: list[str]
    epochs: int
    metrics: dict[str, float] = field(default_factory=dict)


def potential_parts(potential: Potential) -> dict[str, str]:
    """The potential's named parts -> their parameter-name prefixes (``embedding`` ->
    ``model.embedding``, ``interaction_0``, ..., ``readout``, ``scale_shift``, ``dipole_head``)."""
    parts = {name: f"model.{name}" for name, module in potential.model.named_children() if any(True for _ in module.parameters())}
    if potential.dipole_head is not None:
        parts["dipole_head"] = "dipole_head"
    return parts


def frozen_parameter_names(potential: Potential, spec: str | list[str] | None) -> list[str]:
    """Parameters matched by a spec like ``embedding,interaction_0`` (part names; ``interaction`` =
    every block; ``interaction.0`` is read as ``interaction_0``; a parameter-name prefix such as
    ``model.interaction_0.radial`` also works). A part that matches nothing is an error."""
    if not spec:
        return []
    requested = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    parts = potential_parts(potential)
    names = [name for name, _ in potential.named_parameters()]
    chosen: list[str] = []
    for part in requested:
        if part == "interaction":
            prefixes = [v for k, v in parts.items() if k.startswith("interaction_")]
        else:
            prefixes = [parts.get(part.replace("interaction.", "interaction_"), part)]
        matched = [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]
        if not matched:
            known = ", ".join([*parts, "interaction"])
            raise ValueError(
                f"--freeze part {part!r} matches no parameter of this potential; use any of {known} "
                f"or a parameter-name prefix such as model.interaction_0.radial"
            )
        chosen.extend(n for n in matched if n not in chosen)
    return chosen


def _start_of(z: int, known: list[int], init: str) -> str:
    """What a new element's weights started as: the analogue's symbol, or "mean element"."""
    analogue = analogue_element(z, known) if init == "analogue" else None
    return chemical_symbols[analogue] if analogue is not None else "mean element"


def _describe_start(z: int, known: list[int], init: str) -> str:
    return f"{chemical_symbols[z]} (from {_start_of(z, known, init)})"


def _present_species(datasets: list[Dataset]) -> set[int]:
    present: set[int] = set()
    for dataset in datasets:
        for i in range(len(dataset)):
            present.update(int(z) for z in torch.unique(dataset[i][keys.ATOMIC_NUMBERS]).tolist())
    return present


@dataclass
class FinetuneSetup:
    """Everything a fine-tuning run trains and measures, before any training step."""

    parent: Potential  # as loaded (a copy), in the fit dtype
    start: Potential  # grown by the new elements, reference energies refitted; the task trains it
    task: FinetuneTask
    data: ReplayDataModule
    new_train: Dataset  # the new training frames (without replay)
    added: list[int]
    refit: ReferenceRefit | None
    replay: ReplaySource
    original: Dataset | None  # original-domain frames that forgetting is measured on
    original_file: Path | None
    errors: dict[str, dict[str, dict[str, float]]]  # filled in "parent" and "start"; "finetuned" after training
    original_energies_comparable: bool = True  # False: the original domain is another level of theory


def _mean_atoms(path: str | Path) -> float:
    with FrameReader(path) as reader:
        return float(reader.num_atoms.mean())


def _without_energies(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics with the energy errors blanked (None): energies of another level of theory than the
    refitted reference energies differ by the offsets alone, so their error says nothing."""
    return {k: (None if k.startswith("energy") else v) for k, v in metrics.items()}


def prepare_finetune(
    potential: Potential | str | Path,
    train: str | Path,
    run_dir: str | Path,
    valid: str | Path | None = None,
    replay: str | Path | None = None,
    original_test: str | Path | None = None,
    config: FinetuneConfig | None = None,
    fit: FitConfig | None = None,
    max_eval_frames: int = 200,
    progress: bool = True,
) -> FinetuneSetup:
    """The parent, grown and refitted; the replay chosen (see :mod:`gdlphys.train.replay`); the task
    with its frozen entries, anchor and replay weight; the errors before training.
    :func:`finetune_potential` then trains it; benchmarks that need their own Trainer use this."""
    config = config or FinetuneConfig()
    parent = load_potential(potential) if not isinstance(potential, Potential) else potential
    fit = fit or default_finetune_fit(parent)
    if fit.batch_size is None:  # as gdlphys train: frames of the new data for ATOMS_PER_BATCH atoms a step
        fit = replace(fit, batch_size=fit.resolved_batch_size(_mean_atoms(train)))
    dtype = getattr(torch, fit.dtype)
    parent = copy.deepcopy(parent).to(dtype).eval()  # the caller's potential stays as it was
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    source = (
        resolve_replay(parent, run_dir, replay, config.replay_labels, original_test)
        if config.replay_fraction > 0
        else ReplaySource(None, "none", "data")
    )
    original_file = Path(source.original_test or original_test) if (source.original_test or original_test) else None
    data = ReplayDataModule(
        train, valid, cutoff=parent.cutoff, batch_size=fit.batch_size, valid_batch_size=fit.valid_batch_size,
        valid_fraction=fit.valid_fraction, seed=fit.seed, num_workers=fit.num_workers, dtype=dtype,
        replay=source.path, replay_fraction=config.replay_fraction if source.path else 0.0,
        hold_out=0 if original_file else max_eval_frames,
    )
    data.setup("fit")
    new_train = data.new_train_set
    added = sorted(_present_species([new_train, data.valid_set]) - set(parent.species))
    start = grow_species(parent, added, init=config.new_element_init)
    # Replay at the new data's level of theory: one set of reference energies must serve both, so
    # they are fitted on both (else the replay's energies are left out of the loss: forces rehearse).
    same_theory = source.path is not None and source.method is not None and source.method == level_of_theory(train)
    refit_frames: Dataset = new_train
    if same_theory and data.replay_set is not None:
        rng = np.random.default_rng([fit.seed, 2])
        some = np.sort(rng.permutation(len(data.replay_set))[:REFIT_REPLAY_FRAMES]).tolist()
        refit_frames = ConcatDataset([new_train, Subset(data.replay_set, some)])
    refit = refit_reference_energies(start, refit_frames, new_species=added) if config.refit_reference else None
    if progress:
        names = ", ".join(_describe_start(z, parent.species, config.new_element_init) for z in added) or "none"
        replayed = f" ({source.source}, {source.labels} labels)" if source.path else ""
        print(
            f"gdlphys finetune: {len(new_train)} new + {data.replay_per_epoch} replay frames per epoch (drawn from "
            f"{len(data.replay_set or [])}), {len(data.valid_set)} validation frames; new elements: {names}; "
            f"replay: {source.origin}{replayed}",
            file=sys.stderr,
        )
        if refit is not None:
            print(f"gdlphys finetune: {refit.summary()}", file=sys.stderr)

    original: Dataset | None = None
    if original_file is not None:
        original = GraphDataset(original_file, parent.cutoff, dtype, cache=False)
    elif data.replay_held_out is not None and len(data.replay_held_out) > 0:
        original = data.replay_held_out
    if original is not None and len(original) > max_eval_frames:
        original = Subset(original, list(range(max_eval_frames)))
    errors: dict[str, dict[str, dict[str, float]]] = {"new": {"start": dataset_errors(start, data.valid_set)}}
    original_theory = level_of_theory(original_file) if original_file is not None else source.method
    comparable = refit is None or original_theory is None or original_theory == level_of_theory(train)
    if original is not None:
        errors["original"] = {"parent": dataset_errors(parent, original), "start": dataset_errors(start, original)}
        if not comparable:
            errors["original"]["start"] = _without_energies(errors["original"]["start"])

    monitor = None
    if config.max_forgetting is not None and original is not None and data.replay_set is not None:
        frames = Subset(original, list(range(min(FORGETTING_MONITOR_FRAMES, len(original)))))
        monitor = (frames, dataset_errors(start, frames)["forces_mae"])

    importance = None
    rehearsed = data.replay_set if data.replay_set is not None and len(data.replay_set) else original
    if config.anchor_weight > 0 and config.anchor == "sensitivity" and rehearsed is not None:
        importance = force_sensitivity(start, rehearsed, seed=fit.seed)
    task = FinetuneTask(
        start.train(), fit, frozen_parameter_names(start, config.freeze), species_entry_masks(start, added),
        anchor_weight=config.anchor_weight, old_lr_factor=config.old_lr_factor, anchor_importance=importance,
        replay_weight=config.replay_weight, replay_energies=same_theory, old_lr_warmup=config.old_lr_warmup,
        max_forgetting=config.max_forgetting, forgetting_monitor=monitor,
    )
    return FinetuneSetup(parent, start, task, data, new_train, added, refit, source, original, original_file, errors,
                         comparable)


def finetune_potential(
    potential: Potential | str | Path,
    train: str | Path,
    output: str | Path,
    valid: str | Path | None = None,
    replay: str | Path | None = None,
    original_test: str | Path | None = None,
    config: FinetuneConfig | None = None,
    fit: FitConfig | None = None,
    trainer: dict[str, Any] | None = None,
    max_time: str | None = None,
    max_epochs: int | None = None,
    max_eval_frames: int = 200,
    progress: bool = True,
    threads: int | None = None,
) -> FinetuneResult:
    """Fine-tune ``potential`` (object, file, run folder or shipped name) on the frames of ``train``.

    Elements of the new data that the potential lacks are added (:func:`grow_species`); the
    reference energies are refitted on ``train`` (:func:`refit_reference_energies`); each epoch,
    ``config.replay_fraction`` of the training frames are original-domain frames (``replay``, else
    the parent's training data found by its hash, else ``original_test`` structures labelled by
    the parent; :mod:`gdlphys.train.replay`), their loss weighted by ``config.replay_weight``;
    frozen parts, slower old weights and an anchor as ``config`` says (:class:`FinetuneConfig`).
    The architecture, cutoff and neighbour normalisation are the parent's; ``fit`` defaults to
    the parent's recorded options with fine-tuning's learning rate and cosine schedule
    (:func:`default_finetune_fit`). The
    original domain is measured on ``original_test``, else on held-out replay frames (at most
    ``max_eval_frames``). Writes RUN_DIR/potential.pt, finetune.json, forgetting.png and
    learning_curve.png; resumes a cut-short run like ``train_potential``, and chooses its CPU
    threads as it does (``threads``).
    """
    config = config or FinetuneConfig()
    run_dir = Path(output)
    setup = prepare_finetune(
        potential, train, run_dir, valid=valid, replay=replay, original_test=original_test, config=config, fit=fit,
        max_eval_frames=max_eval_frames, progress=progress,
    )
    task, data, errors = setup.task, setup.data, setup.errors
    lightning_trainer = fit_task(task, data, run_dir, task.fit, trainer, max_time, max_epochs, progress, threads=threads,
                                 atoms_per_step=_mean_atoms(train) * task.fit.batch_size)
    tuned = task.inference_potential
    errors["new"]["finetuned"] = dataset_errors(tuned, data.valid_set)
    if setup.original is not None:
        errors["original"]["finetuned"] = dataset_errors(tuned, setup.original)
        if not setup.original_energies_comparable:
            errors["original"]["finetuned"] = _without_energies(errors["original"]["finetuned"])

    metrics = {k: float(v) for k, v in lightning_trainer.callback_metrics.items() if k.startswith("val/")}
    summary = {
        "parent": setup.parent.source,
        "parent_species": list(setup.parent.species),
        "new_species": setup.added,
        "new_species_started_from": {
            chemical_symbols[z]: _start_of(z, list(setup.parent.species), config.new_element_init) for z in setup.added
        },
        "reference_energies": setup.refit.to_dict() if setup.refit is not None else None,
        "train_file": str(Path(train).resolve()),
        "training_data_sha256": file_sha256(train),
        "valid_file": str(Path(valid).resolve()) if valid else None,
        "replay": {**setup.replay.to_dict(), "frames_per_epoch": data.replay_per_epoch,
                   "pool_frames": len(data.replay_set or []), "energies_trained": task.replay_energies},
        "original_test": str(setup.original_file.resolve()) if setup.original_file else None,
        "config": config.to_dict(),
        "frozen": task.fully_frozen,
        "frozen_except_new_elements": task.partly_frozen,
        "fit": task.fit.to_dict(),
        "epochs": int(lightning_trainer.current_epoch),
        "final_replay_weight": task.replay_weight,
        "errors": errors,
    }
    metadata = {**summary, "finetuned_from": setup.parent.source, "validation": metrics}
    potential_path = run_dir / POTENTIAL_FILENAME
    if lightning_trainer.is_global_zero:  # data-parallel ranks write nothing twice
        save_potential(tuned, potential_path, metadata)
        with atomic_write(run_dir / "finetune.json") as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2))
        with atomic_write(run_dir / "card.md") as tmp:
            Path(tmp).write_text(finetune_card(summary))
        plot_forgetting(errors, run_dir / "forgetting.png")
        plot_learning_curve(metrics_files(run_dir), run_dir / "learning_curve.png")
    return FinetuneResult(
        run_dir, potential_path, setup.added, summary["reference_energies"], errors,
        task.fully_frozen + task.partly_frozen, int(lightning_trainer.current_epoch), metrics,
    )

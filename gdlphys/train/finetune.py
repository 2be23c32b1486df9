"""Fine-tuning: a trained potential -> new elements, refitted reference energies, replay,
frozen layers -> a fine-tuned potential, with the error on the new data and on the original
domain measured before and after (so forgetting is visible).
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from gdlphys import keys
from gdlphys.data.datamodule import FramesDataModule, GraphDataset, file_sha256
from gdlphys.graph import collate
from gdlphys.io_utils import atomic_write
from gdlphys.models.files import POTENTIAL_FILENAME, load_potential, save_potential
from gdlphys.models.potential import Potential
from gdlphys.models.surgery import grow_species, refit_reference_energies
from gdlphys.nn import Interaction, ScalarReadout, SpeciesEmbedding, SpeciesScaleShift
from gdlphys.train.config import FitConfig
from gdlphys.train.plots import _pyplot, _save, plot_learning_curve
from gdlphys.train.run import fit_task, metrics_files
from gdlphys.train.system import PotentialTask

FINETUNE_LR_FACTOR = 0.1  # default learning rate: 10x below a training run's
STAGES = ("parent", "start", "finetuned")  # as loaded; after surgery + E0 refit; after training


def default_finetune_fit() -> FitConfig:
    return FitConfig(lr=FitConfig().lr * FINETUNE_LR_FACTOR)


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


def freeze_aliases(potential: Potential) -> dict[str, str]:
    """Readable names of the model's parts -> parameter-name prefixes."""
    aliases: dict[str, str] = {}
    n_interaction = 0
    for index, module in enumerate(potential.model):
        prefix = f"model.{index}"
        if isinstance(module, SpeciesEmbedding):
            aliases["embedding"] = prefix
        elif isinstance(module, Interaction):
            aliases[f"interaction.{n_interaction}"] = prefix
            n_interaction += 1
        elif isinstance(module, ScalarReadout):
            aliases["readout"] = prefix
        elif isinstance(module, SpeciesScaleShift):
            aliases["scale_shift"] = prefix
    return aliases


def frozen_parameter_names(potential: Potential, spec: str | list[str] | None) -> list[str]:
    """Parameters matched by a spec like ``embedding,interaction.0`` (``interaction`` = every block;
    a raw prefix such as ``model.2.radial`` also works). A part that matches nothing is an error."""
    if not spec:
        return []
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    aliases = freeze_aliases(potential)
    names = [name for name, _ in potential.named_parameters()]
    chosen: list[str] = []
    for part in parts:
        if part == "interaction":
            prefixes = [v for k, v in aliases.items() if k.startswith("interaction.")]
        else:
            prefixes = [aliases.get(part, part)]
        matched = [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]
        if not matched:
            known = ", ".join([*aliases, "interaction"])
            raise ValueError(
                f"--freeze part {part!r} matches no parameter of this potential; use any of {known} "
                f"or a parameter-name prefix such as model.2.radial"
            )
        chosen.extend(n for n in matched if n not in chosen)
    return chosen


def dataset_errors(potential: Potential, dataset: Dataset, batch_size: int = 32) -> dict[str, float]:
    """Energy (per atom) and force MAE / RMSE of ``potential`` on labelled graphs (eV, eV/Å)."""
    was_training = potential.training
    potential.eval()
    sums = {"energy_per_atom_abs": 0.0, "energy_per_atom_sq": 0.0, "forces_abs": 0.0, "forces_sq": 0.0}
    n_frames = n_components = 0
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            with torch.enable_grad():
                out = potential(batch, compute_forces=keys.FORCES in batch)
            n_atoms = batch[keys.NUM_ATOMS].double()
            err_e = (out[keys.ENERGY].detach().double() - batch[keys.ENERGY].double()) / n_atoms
            sums["energy_per_atom_abs"] += float(err_e.abs().sum())
            sums["energy_per_atom_sq"] += float((err_e**2).sum())
            n_frames += len(err_e)
            if keys.FORCES in batch:
                err_f = out[keys.FORCES].detach().double() - batch[keys.FORCES].double()
                sums["forces_abs"] += float(err_f.abs().sum())
                sums["forces_sq"] += float((err_f**2).sum())
                n_components += err_f.numel()
    finally:
        potential.train(was_training)
    if n_frames == 0:
        raise ValueError("no frames to evaluate on")
    metrics = {
        "energy_per_atom_mae": sums["energy_per_atom_abs"] / n_frames,
        "energy_per_atom_rmse": math.sqrt(sums["energy_per_atom_sq"] / n_frames),
        "n_frames": n_frames,
    }
    if n_components:
        metrics["forces_mae"] = sums["forces_abs"] / n_components
        metrics["forces_rmse"] = math.sqrt(sums["forces_sq"] / n_components)
    return metrics


def plot_forgetting(errors: dict[str, dict[str, dict[str, float]]], output: str | Path) -> Path:
    """Bars of force and energy MAE on the new data and on the original domain, per stage."""
    plt = _pyplot()
    domains = [d for d in ("new", "original") if d in errors]
    panels = [("forces_mae", "force MAE (meV/Å)"), ("energy_per_atom_mae", "energy MAE (meV/atom)")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(STAGES)
    for ax, (metric, title) in zip(axes, panels):
        for k, stage in enumerate(STAGES):
            values = [1000 * errors[d].get(stage, {}).get(metric, math.nan) for d in domains]
            bars = ax.bar([i + (k - 1) * width for i in range(len(domains))], values, width, label=stage)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(domains)), [f"{d} data" for d in domains])
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("fine-tuning: error before (parent, start) and after", fontsize=10)
    fig.tight_layout()
    _save(fig, Path(output))
    plt.close(fig)
    return Path(output)


def _present_species(datasets: list[Dataset]) -> set[int]:
    present: set[int] = set()
    for dataset in datasets:
        for i in range(len(dataset)):
            present.update(int(z) for z in torch.unique(dataset[i][keys.ATOMIC_NUMBERS]).tolist())
    return present


def finetune_potential(
    potential: Potential | str | Path,
    train: str | Path,
    output: str | Path,
    valid: str | Path | None = None,
    replay: str | Path | None = None,
    replay_fraction: float = 0.2,
    original_test: str | Path | None = None,
    freeze: str | list[str] | None = None,
    fit: FitConfig | None = None,
    trainer: dict[str, Any] | None = None,
    max_time: str | None = None,
    max_epochs: int | None = None,
    refit_reference: bool = True,
    max_eval_frames: int = 200,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``potential`` (object, file, run folder or shipped name) on the frames of ``train``.

    Elements of the new data that the potential lacks are added (:func:`grow_species`); the
    reference energies are refitted on ``train`` (:func:`refit_reference_energies`); a seeded
    ``replay_fraction`` of the training set comes from ``replay`` (the original training data);
    the parts named by ``freeze`` keep their weights. The architecture, cutoff and neighbour
    normalisation are the parent's. ``fit`` defaults to a 10x lower learning rate than
    training. The original domain is ``original_test``, else the replay frames not drawn for
    training (at most ``max_eval_frames``). Writes RUN_DIR/potential.pt, finetune.json,
    forgetting.png and learning_curve.png; resumes a cut-short run like ``train_potential``.
    """
    fit = fit or default_finetune_fit()
    dtype = getattr(torch, fit.dtype)
    parent = load_potential(potential) if not isinstance(potential, Potential) else potential
    parent_source = getattr(parent, "source", None)
    parent = copy.deepcopy(parent).to(dtype).eval()  # the caller's potential stays as it was
    run_dir = Path(output)
    run_dir.mkdir(parents=True, exist_ok=True)

    data = FramesDataModule(
        train, valid, cutoff=parent.cutoff, batch_size=fit.batch_size, valid_batch_size=fit.valid_batch_size,
        valid_fraction=fit.valid_fraction, seed=fit.seed, num_workers=fit.num_workers, dtype=dtype,
        replay=replay, replay_fraction=replay_fraction if replay else 0.0,
    )
    data.setup("fit")
    new_train = data.train_set.datasets[0] if isinstance(data.train_set, ConcatDataset) else data.train_set
    present = _present_species([new_train, data.valid_set])
    added = sorted(present - set(parent.species))
    start = grow_species(parent, added)
    refit = refit_reference_energies(start, new_train, new_species=added) if refit_reference else None
    if progress:
        names = ", ".join(str(z) for z in added) or "none"
        print(
            f"gdlphys finetune: {len(new_train)} new + {len(data.replay_set or [])} replay training / "
            f"{len(data.valid_set)} validation frames; new species (Z): {names}",
            file=sys.stderr,
        )
        if refit is not None:
            print(f"gdlphys finetune: {refit.summary()}", file=sys.stderr)

    original: Dataset | None = None
    if original_test is not None:
        original = GraphDataset(original_test, parent.cutoff, dtype, cache=False)
    elif data.replay_held_out is not None and len(data.replay_held_out) > 0:
        original = data.replay_held_out
    if original is not None and len(original) > max_eval_frames:
        original = Subset(original, list(range(max_eval_frames)))
    errors: dict[str, dict[str, dict[str, float]]] = {"new": {"start": dataset_errors(start, data.valid_set)}}
    if original is not None:
        errors["original"] = {"parent": dataset_errors(parent, original), "start": dataset_errors(start, original)}

    frozen = frozen_parameter_names(start, freeze)
    for name, parameter in start.named_parameters():
        parameter.requires_grad_(name not in frozen)
    task = PotentialTask(start.train(), fit)
    lightning_trainer = fit_task(task, data, run_dir, fit, trainer, max_time, max_epochs, progress)
    tuned = task.inference_potential
    errors["new"]["finetuned"] = dataset_errors(tuned, data.valid_set)
    if original is not None:
        errors["original"]["finetuned"] = dataset_errors(tuned, original)

    metrics = {k: float(v) for k, v in lightning_trainer.callback_metrics.items() if k.startswith("val/")}
    summary = {
        "parent": parent_source,
        "parent_species": list(parent.species),
        "new_species": added,
        "reference_energies": refit.to_dict() if refit is not None else None,
        "train_file": str(Path(train).resolve()),
        "training_data_sha256": file_sha256(train),
        "valid_file": str(Path(valid).resolve()) if valid else None,
        "replay": {
            "file": str(Path(replay).resolve()) if replay else None,
            "fraction": replay_fraction if replay else 0.0,
            "frames": len(data.replay_set or []),
        },
        "original_test": str(Path(original_test).resolve()) if original_test else None,
        "frozen": frozen,
        "fit": fit.to_dict(),
        "epochs": int(lightning_trainer.current_epoch),
        "errors": errors,
    }
    metadata = {**summary, "finetuned_from": parent_source, "validation": metrics}
    potential_path = save_potential(tuned, run_dir / POTENTIAL_FILENAME, metadata)
    with atomic_write(run_dir / "finetune.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    plot_forgetting(errors, run_dir / "forgetting.png")
    plot_learning_curve(metrics_files(run_dir), run_dir / "learning_curve.png")
    return FinetuneResult(
        run_dir, potential_path, added, summary["reference_energies"], errors, frozen,
        int(lightning_trainer.current_epoch), metrics,
    )


def format_errors(errors: dict[str, dict[str, dict[str, float]]]) -> str:
    """A small table: force and energy MAE per domain and stage."""
    lines = [f"{'domain':<10}{'stage':<11}{'force MAE (meV/Å)':>19}{'energy MAE (meV/atom)':>23}"]
    for domain, stages in errors.items():
        for stage in STAGES:
            if stage in stages:
                m = stages[stage]
                lines.append(
                    f"{domain:<10}{stage:<11}{1000 * m.get('forces_mae', math.nan):>19.1f}"
                    f"{1000 * m['energy_per_atom_mae']:>23.2f}"
                )
    return "\n".join(lines)

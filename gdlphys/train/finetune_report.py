"""What a fine-tuning run reports: errors per domain (new data, original domain) and stage
(parent, start, fine-tuned), as numbers, a table and a bar plot (forgetting.png)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from gdlphys import keys
from gdlphys.figures import save_figure, subplots
from gdlphys.graph import collate
from gdlphys.models.potential import Potential
from gdlphys.train.metrics import ErrorMetrics

STAGES = ("parent", "start", "finetuned")  # as loaded; after surgery + E0 refit; after training


def dataset_errors(potential: Potential, dataset: Dataset, batch_size: int = 32) -> dict[str, float]:
    """Errors of ``potential`` on labelled graphs (:class:`~gdlphys.train.metrics.ErrorMetrics`:
    ``energy_per_atom_mae``, ``forces_mae``, ... in eV, eV/Å; ``n_frames``)."""
    was_training = potential.training
    potential.eval()
    metrics = ErrorMetrics()
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            with torch.enable_grad():
                out = potential(batch, compute_forces=keys.FORCES in batch)
            metrics.update(out, batch)
    finally:
        potential.train(was_training)
    if int(metrics.n_frames) == 0:
        raise ValueError("no frames to evaluate on")
    return metrics.as_floats()


def plot_forgetting(errors: dict[str, dict[str, dict[str, float]]], output: str | Path) -> Path:
    """Bars of force and energy MAE on the new data and on the original domain, per stage."""
    domains = [d for d in ("new", "original") if d in errors]
    panels = [("forces_mae", "force MAE (meV/Å)"), ("energy_per_atom_mae", "energy MAE (meV/atom)")]
    fig, axes = subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(STAGES)
    for ax, (metric, title) in zip(axes, panels):
        for k, stage in enumerate(STAGES):
            values = [1000 * (errors[d].get(stage, {}).get(metric) or math.nan) for d in domains]  # None: not comparable
            bars = ax.bar([i + (k - 1) * width for i in range(len(domains))], values, width, label=stage)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(domains)), [f"{d} data" for d in domains])
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("fine-tuning: error before (parent, start) and after", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, output)


def format_errors(errors: dict[str, dict[str, dict[str, float]]]) -> str:
    """A small table: force and energy MAE per domain and stage."""
    lines = [f"{'domain':<10}{'stage':<11}{'force MAE (meV/Å)':>19}{'energy MAE (meV/atom)':>23}"]
    for domain, stages in errors.items():
        for stage in STAGES:
            if stage in stages:
                m = stages[stage]
                energy = m.get("energy_per_atom_mae")
                shown = f"{1000 * energy:>23.2f}" if energy is not None else f"{'another theory':>23}"
                lines.append(f"{domain:<10}{stage:<11}{1000 * m.get('forces_mae', math.nan):>19.1f}{shown}")
    return "\n".join(lines)


def _article(start: str) -> str:
    return f"the {start}" if start == "mean element" else f"a copy of {start}"


def finetune_card(summary: dict) -> str:
    """RUN_DIR/card.md of a fine-tuning run: where it started, what the surgery and the refit did,
    what was replayed, and the errors before and after (from finetune.json's ``summary``)."""
    from ase.data import chemical_symbols

    parent = summary["parent"] or "(a Potential object)"
    lines = [f"# Fine-tuned from {parent}", ""]
    started = summary.get("new_species_started_from") or {}
    added = ", ".join(f"{chemical_symbols[z]} (started as {_article(started.get(chemical_symbols[z], '?'))})" for z in summary["new_species"])
    lines += [
        f"- **Training data**: `{summary['train_file']}` (sha256 {summary['training_data_sha256'][:12]}…)",
        f"- **Parent's elements**: {', '.join(chemical_symbols[z] for z in summary['parent_species'])}; "
        f"**added**: {added or 'none'}",
    ]
    replay = summary["replay"]
    if replay.get("path"):
        energies = "energies and forces" if replay.get("energies_trained") else "forces only (another level of theory)"
        lines.append(f"- **Replay**: {replay['frames_per_epoch']} frames per epoch drawn from {replay['pool_frames']} "
                     f"({replay.get('origin')}: `{replay.get('source')}`, {replay.get('labels')} labels), {energies}")
    else:
        lines.append("- **Replay**: none")
    config = summary["config"]
    lines.append(f"- **Options**: replay fraction {config['replay_fraction']:.2f}, replay weight {config['replay_weight']:g}, "
                 f"old weights at {config['old_lr_factor']:g}x the rate after a {config['old_lr_warmup']}-step warm-up, "
                 f"frozen: {config['freeze'] or 'nothing'}; learning rate {summary['fit']['lr']:g}; {summary['epochs']} epoch(s)")
    refit = summary.get("reference_energies")
    if refit:
        lines += ["", "## Reference energies (eV per atom), refitted by least squares on "
                  f"{refit['n_frames']} frames", "", "| element | before | after |", "| --- | --- | --- |"]
        lines += [f"| {chemical_symbols[z]} | {a:.4f} | {b:.4f} |" for z, a, b in zip(refit["species"], refit["old"], refit["new"])]
        lines += ["", f"Energy RMS those frames leave for the network: {1000 * refit['residual_rms_per_atom_before']:.1f} → "
                  f"{1000 * refit['residual_rms_per_atom_after']:.1f} meV/atom."]
    lines += ["", "## Errors before and after (`forgetting.png`)", "", "```", format_errors(summary["errors"]), "```", ""]
    return "\n".join(lines)

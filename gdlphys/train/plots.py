"""Pictures a person would rather look at than read: learning curves and parity plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from gdlphys.figures import save_figure, subplots


def read_metric_rows(metrics_csvs: Sequence[str | Path]) -> list[dict[str, str]]:
    """Rows of Lightning's CSV logs, in order (a resumed run has one file per attempt)."""
    rows: list[dict[str, str]] = []
    for path in metrics_csvs:
        with open(path, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def plot_learning_curve(metrics_csvs: Sequence[str | Path], output: str | Path) -> Path | None:
    """Training/validation loss and validation MAEs per epoch from Lightning's CSV logs."""
    output = Path(output)
    rows = read_metric_rows([p for p in metrics_csvs if Path(p).is_file()])
    if not rows:
        return None
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        epoch = row.get("epoch")
        if not epoch:
            continue
        for key, value in row.items():
            if key in ("epoch", "step") or value in ("", None):
                continue
            series.setdefault(key, {})[int(float(epoch))] = float(value)
    panels = [
        ("loss", ["train/loss_epoch", "train/loss", "val/loss"], ""),
        ("energy MAE (meV/atom)", ["val/energy_per_atom_mae"], "milli"),
        ("force MAE (meV/Å)", ["val/forces_mae"], "milli"),
    ]
    fig, axes = subplots(1, 3, figsize=(13, 3.8))
    for ax, (title, names, unit) in zip(axes, panels):
        for name in names:
            if name in series:
                epochs = sorted(series[name])
                values = np.array([series[name][e] for e in epochs]) * (1000.0 if unit == "milli" else 1.0)
                ax.plot(epochs, values, marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, output)


def plot_parity(
    energies: tuple[np.ndarray, np.ndarray],
    forces: tuple[np.ndarray, np.ndarray] | None,
    output: str | Path,
    title: str = "",
    dipole: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Predicted against reference: energy per atom (relative to the mean), force and dipole components."""
    panels = 1 + (forces is not None) + (dipole is not None)
    fig, axes = subplots(1, panels, figsize=(5.2 * panels, 4.8), squeeze=False)
    ref_e, pred_e = energies
    pairs = [(axes[0, 0], ref_e, pred_e, "energy per atom above the reference energies E0 (eV/atom)")]
    if forces is not None:
        pairs.append((axes[0, len(pairs)], forces[0].ravel(), forces[1].ravel(), "force components (eV/Å)"))
    if dipole is not None:
        pairs.append((axes[0, len(pairs)], dipole[0].ravel(), dipole[1].ravel(), "dipole components (e·Å)"))
    for ax, ref, pred, label in pairs:
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1)
        ax.scatter(ref, pred, s=4, alpha=0.5)
        mae = float(np.mean(np.abs(pred - ref)))
        rmse = math.sqrt(float(np.mean((pred - ref) ** 2)))
        ax.set_title(f"{label}\nMAE {mae:.4g}, RMSE {rmse:.4g}", fontsize=9)
        ax.set_xlabel("reference")
        ax.set_ylabel("predicted")
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, output)

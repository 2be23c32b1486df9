"""How well a committee's force spread tracks its true error, on labelled frames.

Per atom: the spread (``forces_std`` of :class:`gdlphys.calculator.GDLCalculator`) and the norm
of the committee-mean force error. Their Spearman rank correlation says whether the spread
ranks the errors (what selection needs); the calibration factor ``sqrt(mean error^2 / mean
spread^2)`` says by how much to multiply a spread to read it as an error in eV/Å (a committee
fine-tuned from one parent is typically over-confident: a factor above 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from gdlphys.calculator import GDLCalculator
from gdlphys.figures import save_figure, subplots

__all__ = ["Calibration", "calibrate", "plot_calibration", "spread_and_error"]


@dataclass
class Calibration:
    atoms: int
    frames: int
    spearman_rho: float | None  # None: fewer than three atoms, or a constant spread
    factor: float | None  # error ~ factor * spread (RMS ratio)
    forces_mae: float  # eV/Å, force components, committee mean
    mean_spread: float  # eV/Å per atom

    def to_dict(self) -> dict:
        return asdict(self)


def spread_and_error(members: Sequence[str | Path], frames: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per atom: committee force spread and |mean force - label| (eV/Å); and every component's error."""
    calc = GDLCalculator([str(m) for m in members], device="cpu")
    spreads, errors, components = [], [], []
    for frame in frames:
        reference = frame.get_forces()
        atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
        atoms.calc = calc
        difference = atoms.get_forces() - reference
        spreads.append(np.asarray(calc.results.get("forces_std", np.zeros(len(atoms)))))  # one member: no spread
        errors.append(np.linalg.norm(difference, axis=1))
        components.append(np.abs(difference).ravel())
    if not spreads:
        raise ValueError("no labelled frames to calibrate on")
    return np.concatenate(spreads), np.concatenate(errors), np.concatenate(components)


def calibrate(members: Sequence[str | Path], frames: Sequence[Atoms]) -> tuple[Calibration, np.ndarray, np.ndarray]:
    """The :class:`Calibration` of ``members`` on labelled ``frames``, with the per-atom spreads and errors."""
    from scipy.stats import spearmanr

    spread, error, components = spread_and_error(members, frames)
    rho = None
    if len(spread) >= 3 and np.ptp(spread) > 0 and np.ptp(error) > 0:
        rho = float(spearmanr(spread, error).statistic)
    mean_square = float(np.mean(spread**2))
    factor = float(np.sqrt(np.mean(error**2) / mean_square)) if mean_square > 0 else None
    result = Calibration(len(spread), len(frames), rho, factor, float(components.mean()), float(spread.mean()))
    return result, spread, error


def plot_calibration(spread: np.ndarray, error: np.ndarray, calibration: Calibration, output: str | Path) -> Path:
    """Per-atom true error against spread (log-log), with the line error = factor * spread."""
    fig, ax = subplots(figsize=(5.5, 5))
    ax.scatter(1000 * spread, 1000 * error, s=4, alpha=0.5)
    low, high = 1000 * max(float(spread.min()), 1e-6), 1000 * max(float(spread.max()), 1e-5)
    ax.plot([low, high], [low, high], "k:", lw=1, label="error = spread")
    if calibration.factor is not None:
        ax.plot([low, high], [calibration.factor * low, calibration.factor * high], "r--", lw=1,
                label=f"error = {calibration.factor:.2f} x spread")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("committee force spread per atom (meV/Å)")
    ax.set_ylabel("true force error per atom (meV/Å)")
    rho = "n/a" if calibration.spearman_rho is None else f"{calibration.spearman_rho:.2f}"
    ax.set_title(f"{calibration.frames} frames, {calibration.atoms} atoms: Spearman ρ = {rho}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, output)

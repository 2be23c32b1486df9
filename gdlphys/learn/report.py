"""What an active-learning run leaves for a person: rounds.json, rounds.png (error and spread
per round) and card.md."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gdlphys.figures import save_figure, subplots
from gdlphys.io_utils import atomic_write
from gdlphys.learn.config import ROLLBACK_FRAMES

__all__ = ["plot_rounds", "spread_distribution", "write_card", "write_json"]


def write_json(path: Path, values) -> Path:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(values, indent=2))
    return path


def spread_distribution(spread: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """Percentiles (eV/Å) of the frames' largest per-atom spread, and how many pass ``threshold``."""
    if len(spread) == 0:
        return {"frames": 0, "over_threshold": 0, "p50": None, "p90": None, "max": None}
    p50, p90 = np.percentile(spread, [50, 90])
    return {"frames": int(len(spread)), "over_threshold": int((spread > threshold).sum()),
            "p50": float(p50), "p90": float(p90), "max": float(spread.max())}


def _value(record: dict, *path: str) -> float:
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return math.nan if record is None else 1000 * float(record)


def plot_rounds(rounds: Sequence[dict], threshold: float, output: Path) -> Path:
    """Force errors (new frames before retraining, validation after, independent test) and the
    spread percentiles, per round."""
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.8))
    x = [r["round"] for r in rounds]
    for label, path in (("new frames, before retraining", ("errors", "new_frames_before", "forces_mae")),
                        ("validation, after retraining", ("errors", "validation_after", "forces_mae")),
                        ("test frames", ("errors", "test", "forces_mae"))):
        values = [_value(r, *path) for r in rounds]
        if not all(math.isnan(v) for v in values):
            left.plot(x, values, "o-", label=label)
    left.set_xlabel("round")
    left.set_ylabel("force MAE (meV/Å)")
    left.legend(fontsize=8)
    for key in ("p50", "p90", "max"):
        right.plot(x, [_value(r, "spread", key) for r in rounds], "o-", label=f"spread {key}")
    right.axhline(1000 * threshold, color="k", ls=":", lw=1, label="max_force_std")
    right.set_xlabel("round")
    right.set_ylabel("largest per-atom force spread (meV/Å)")
    from matplotlib.ticker import MaxNLocator

    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole
    right.legend(fontsize=8)
    fig.suptitle("active learning: error and committee spread per round", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, output)


def _mae(value) -> str:
    return "–" if value is None else f"{1000 * value:.1f}"


def _drive(config: dict) -> str:
    """What exploration moved on (runs written before drivers existed moved on the mean)."""
    return "each member in turn" if config.get("drive", "mean") == "members" else "the committee's mean forces"


def write_card(path: Path, summary: dict) -> Path:
    """A model card: what was learnt, from what, how the loop ended, per-round table, calibration."""
    config = summary["config"]
    lines = [
        f"# {path.parent.name} — active-learning potential",
        "",
        f"Made by `gdlphys learn` from `{summary['start']}` and `{', '.join(summary['start_potentials'])}`; "
        f"labels: {summary['method']} ({summary['software']}); selection: {config['select']}.",
        "",
        f"- **Ended**: {summary['finished']} after {len(summary['rounds'])} rounds, "
        f"{summary['labels_used']} of {config['budget_labels']} labels ({summary['seed_labels']} seed frames).",
        f"- **Exploration**: Langevin MD on {_drive(config)} at {', '.join(f'{t:g} K' for t in config['temperatures'])}, "
        f"{config['trajectories']} trajectories x {config['steps']} steps of {config['timestep_fs']} fs per temperature "
        f"and round; frames over {config['max_force_std']} eV/Å spread selected (at most {config['per_round']} a round, "
        f"{config['min_separation_fs']} fs apart); at {config['hard_force_std']} eV/Å a trajectory goes back {ROLLBACK_FRAMES} frames "
        f"with new velocities, {config.get('rollbacks', 0)} times at most, then stops.",
        f"- **Committee**: {len(summary['committee'])} members in `committee/` (`committee.yaml` loads them as a "
        f"calculator); `potential.pt` is member {summary['best_member']}, the lowest validation force error.",
        "",
        "| round | explored frames | over threshold | labelled | labels used | force MAE new frames before (meV/Å) "
        "| validation after (meV/Å) | test (meV/Å) | wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["rounds"]:
        errors = r.get("errors", {})
        lines.append(
            f"| {r['round']} | {r['spread']['frames']} | {r['spread']['over_threshold']} | {r['labelled']} "
            f"| {r['labels_used']} | {_mae((errors.get('new_frames_before') or {}).get('forces_mae'))} "
            f"| {_mae((errors.get('validation_after') or {}).get('forces_mae'))} "
            f"| {_mae((errors.get('test') or {}).get('forces_mae'))} | {sum(r['wall_s'].values()):.0f} |"
        )
    calibration = summary.get("calibration")
    if calibration:
        rho = calibration["spearman_rho"]
        factor = calibration["factor"]
        lines += [
            "",
            f"**Calibration** (final committee, {calibration['frames']} labelled frames of the last exploration, "
            f"never trained on): Spearman ρ(spread, error) = {'n/a' if rho is None else f'{rho:.2f}'}; "
            f"error ≈ {'n/a' if factor is None else f'{factor:.2f}'} x spread (`calibration.png`).",
        ]
    with atomic_write(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path

"""How a potential is fine-tuned: :class:`FinetuneConfig` (beyond the fit options) and the fit
options a fine-tuning run starts from (the parent's recorded ones)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gdlphys.models.potential import Potential
from gdlphys.models.surgery import GROW_INITS
from gdlphys.train.config import FitConfig
from gdlphys.train.replay import REPLAY_LABELS

__all__ = ["ANCHOR_KINDS", "FINETUNE_LR_FACTOR", "FinetuneConfig", "default_finetune_fit", "recorded_fit"]

FINETUNE_LR_FACTOR = 0.5  # default peak learning rate: this times gdlphys train's (FitConfig.lr); the parent's weights step old_lr_factor times that
ANCHOR_KINDS = ("sensitivity", "uniform")


@dataclass
class FinetuneConfig:
    """How a potential is fine-tuned, beyond the fit options (:class:`FitConfig`).

    The defaults are measured (docs/finetune.md; ``examples/finetune_vs_scratch.py`` on
    organic-xtb 2 + bromine-xtb, earlier organic-xtb 1 + phosphorus-xtb and ethanol-xtb +
    nitrogen-xtb): half of each epoch replays the parent's own training data, the parent's
    weights step at 0.3 times the new element's rate after a 100-step warm-up, and the replay
    weight rises whenever the original domain's force error passes +10 %. With organic-xtb 2
    as the parent (50 bromine frames, 5 CPU-minutes, cosine LR from 0.01), the parent's weights
    at the full rate gave 59.6 meV/Å on the new molecules and +24 % on the original domain; at
    0.3x, 47.5 meV/Å and +6 %.

    Attributes:
        replay_fraction: share of each epoch's training frames drawn (afresh) from the replay frames.
        replay_weight: weight of a replayed frame's loss terms relative to a new frame's.
        replay_labels: "data" (the replay file's labels), "parent" (the parent's predictions:
            self-distillation), "auto" (the file's where every frame has energy and forces).
        freeze: parts whose weights stay fixed (``embedding,interaction_0``, ...); a new
            element's own entries in them still train.
        old_lr_factor: the parent's weights take steps this many times the new element's
            (0: only the new element's entries train; the old elements cannot change at all).
        old_lr_warmup: optimizer steps over which that factor ramps up from 0: the first,
            largest gradients (a new element still far off) go to the new entries, not into
            what the parent learnt.
        anchor_weight: weight of the pull of the old weights towards the parent's (0: off).
        anchor: "sensitivity" (each weight weighted by how much the original-domain forces
            depend on it, EWC-like: the penalty estimates the rise of their force MSE) or
            "uniform" (mean squared change, L2-SP).
        refit_reference: refit the reference energies on the new data by least squares.
        max_forgetting: largest rise of the original domain's force error (0.1 = +10 %) before the
            replay weight is raised: after every validation the error on a few original-domain
            frames is measured; above this rise the replay weight doubles, below half of it the
            weight halves again, never under ``replay_weight`` (None: a fixed weight).
        new_element_init: where a new element's weights start: "mean" (the average known
            element; measured the better start, :mod:`gdlphys.models.surgery`) or "analogue" (a
            copy of the known element most like it: P from N, Br from Cl).
    """

    replay_fraction: float = 0.5
    replay_weight: float = 1.0
    replay_labels: str = "auto"
    freeze: str | None = None
    old_lr_factor: float = 0.3
    old_lr_warmup: int = 100
    anchor_weight: float = 0.0
    anchor: str = "sensitivity"
    refit_reference: bool = True
    new_element_init: str = "mean"
    max_forgetting: float | None = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.replay_fraction < 1.0:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
        if self.replay_weight <= 0:
            raise ValueError(f"replay_weight must be > 0, got {self.replay_weight}")
        if self.replay_labels not in REPLAY_LABELS:
            raise ValueError(f"replay_labels must be one of {', '.join(REPLAY_LABELS)}, got {self.replay_labels!r}")
        if self.max_forgetting is not None and self.max_forgetting <= 0:
            raise ValueError(f"max_forgetting must be > 0 (or None: off), got {self.max_forgetting}")
        if self.old_lr_warmup < 0:
            raise ValueError(f"old_lr_warmup must be >= 0 steps, got {self.old_lr_warmup}")
        if not 0.0 <= self.old_lr_factor <= 1.0:
            raise ValueError(f"old_lr_factor must be in [0, 1], got {self.old_lr_factor}")
        if self.anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {self.anchor_weight}")
        if self.new_element_init not in GROW_INITS:
            raise ValueError(f"new_element_init must be one of {', '.join(GROW_INITS)}, got {self.new_element_init!r}")
        if self.anchor not in ANCHOR_KINDS:
            raise ValueError(f"anchor must be one of {', '.join(ANCHOR_KINDS)}, got {self.anchor!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def recorded_fit(potential: Potential | None) -> FitConfig:
    """The fit options a potential file records it was trained with (FitConfig's defaults where it records none)."""
    recorded = (potential.metadata.get("fit") or {}) if potential is not None else {}
    return FitConfig(**{k: v for k, v in recorded.items() if k in FitConfig.__dataclass_fields__})


def default_finetune_fit(parent: Potential | None = None) -> FitConfig:
    """The parent's recorded fit options (EMA, loss weights, second stage) with fine-tuning's own
    learning rate, schedule and batch size.

    Four options are fine-tuning's own, whatever the parent used (as measured for the
    fine-tuning defaults, docs/finetune.md):

    - the peak learning rate, :data:`FINETUNE_LR_FACTOR` times gdlphys train's default (0.01),
      not the parent's: a parent's recorded rate is the peak of its own schedule, which a
      fine-tuned parent has already lowered;
    - a cosine schedule over the budget (``--max-time``, else the epochs): with organic-xtb 2
      as the parent and 50 bromine frames in 5 CPU-minutes, 59.6 meV/Å on the new molecules and
      +24 % on the original domain against 66.1 and +46 % at the plateau schedule from 0.02;
    - an EMA without warm-up, whose average starts at the parent's weights and stays near them
      while the new element's first large steps go by;
    - the batch size None: :func:`~gdlphys.train.finetune.prepare_finetune` resolves it as
      gdlphys train does, frames of the *new* data for about ATOMS_PER_BATCH atoms a step, not the
      parent's recorded size (its data's molecules may be larger). With organic-xtb 3 as the
      parent onto bromine-xtb (10.8 atoms a frame, 5 CPU-minutes): 4 frames a step gave 37.3 and
      32.1 meV/Å at 50 and 200 frames, the parent's 2 gave 43.1 and 36.9."""
    base = recorded_fit(parent)
    return FitConfig(**{
        **base.to_dict(), "lr": FitConfig.lr * FINETUNE_LR_FACTOR, "lr_schedule": "cosine", "ema_warmup": False,
        "batch_size": None,
    })

"""Typed options of a training run (every one settable from YAML)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

LR_SCHEDULES = ("plateau", "cosine")
ATOMS_PER_BATCH = 48  # the default batch holds about this many atoms (see FitConfig.batch_size)


@dataclass
class FitConfig:
    """How the potential is fitted.

    Attributes:
        lr: initial Adam(W) learning rate.
        weight_decay: AdamW weight decay.
        energy_weight: weight of the per-atom energy MSE (eV^2/atom^2).
        forces_weight: weight of the force-component MSE ((eV/Å)^2).
        stress_weight: weight of the stress MSE ((eV/Å^3)^2), used where stress labels exist.
        dipole_weight: weight of the dipole-component MSE ((e*Å)^2), used where the model has a
            dipole head and the data dipole labels.
        ema_decay: decay of the exponential moving average of the weights (0 disables EMA);
            validation, checkpoints' best model and the exported potential use the average.
        ema_warmup: the EMA's decay starts low and grows to ``ema_decay`` as (1 + n) / (10 + n)
            after n steps (as torch_ema, which MACE uses): the average leaves the random
            initial weights behind within tens of steps, not hundreds.
        batch_size: training structures per step; None (the default) picks about
            :data:`ATOMS_PER_BATCH` atoms a step from the training frames' mean size (2 aspirins,
            5 ethanols), at least 1: more, smaller steps beat fewer large ones at equal time
            (docs/model.md), and a step's cost on the CPU grows with its atoms, so the count of
            atoms is what to hold fixed.
        valid_batch_size: validation structures per step.
        valid_fraction: held out for validation when no validation file is given.
        lr_schedule: "plateau": the LR drops by ``lr_factor`` after ``lr_patience`` epochs without
            validation improvement. "cosine": the LR follows half a cosine from ``lr`` down to
            ``min_lr`` over the run's budget (wall-clock ``max_time`` or ``max_epochs``, whichever
            runs out first), set before every step; a run with a known budget ends at a low LR
            instead of wherever the plateau test left it.
        lr_factor: factor of the LR-on-plateau schedule.
        lr_patience: epochs without validation improvement before the LR drops.
        min_lr: the lowest LR of either schedule.
        grad_clip: gradient-norm clipping (0 disables).
        stage_two_fraction: share of the budget (time or epochs, whichever runs out first) at
            the end of training spent in a second stage, as MACE does: the energy weight is
            multiplied by ``stage_two_energy_factor`` and the learning rate by
            ``stage_two_lr_factor``. 0 disables it.
        stage_two_energy_factor: energy-weight multiplier of the second stage.
        stage_two_lr_factor: learning-rate multiplier on entering the second stage (plateau
            schedule only: the cosine schedule is already low by then and goes on unchanged).
        seed: seeds the split, the initial weights and the shuffling.
        num_workers: DataLoader worker processes.
        dtype: precision the model is trained in ("float32" or "float64").
    """

    lr: float = 0.02
    weight_decay: float = 0.0
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    stress_weight: float = 0.0
    dipole_weight: float = 1.0
    ema_decay: float = 0.99
    ema_warmup: bool = True
    batch_size: int | None = None
    valid_batch_size: int = 32
    valid_fraction: float = 0.1
    lr_schedule: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 4
    min_lr: float = 1e-5
    grad_clip: float = 10.0
    stage_two_fraction: float = 0.2
    stage_two_energy_factor: float = 10.0
    stage_two_lr_factor: float = 0.2
    seed: int = 0
    num_workers: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"fit.lr must be positive, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"fit.ema_decay must be in [0, 1), got {self.ema_decay}")
        if (self.batch_size is not None and self.batch_size < 1) or self.valid_batch_size < 1:
            raise ValueError("fit.batch_size and fit.valid_batch_size must be >= 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"fit.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"fit.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not 0.0 <= self.stage_two_fraction < 1.0:
            raise ValueError(f"fit.stage_two_fraction must be in [0, 1), got {self.stage_two_fraction}")
        if self.stage_two_energy_factor <= 0 or self.stage_two_lr_factor <= 0:
            raise ValueError("fit.stage_two_energy_factor and fit.stage_two_lr_factor must be positive")
        if min(self.energy_weight, self.forces_weight, self.stress_weight, self.dipole_weight) < 0:
            raise ValueError("loss weights must be >= 0")

    def resolved_batch_size(self, mean_atoms: float) -> int:
        """``batch_size``, or for None the frames per step that hold about ATOMS_PER_BATCH atoms."""
        if self.batch_size is not None:
            return self.batch_size
        return max(1, round(ATOMS_PER_BATCH / max(float(mean_atoms), 1.0)))

    def to_dict(self) -> dict:
        return asdict(self)

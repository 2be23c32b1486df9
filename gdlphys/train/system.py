"""The LightningModule: loss, metrics, optimiser, EMA. The potential is a plain module it holds."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MeanMetric

from gdlphys import keys
from gdlphys.models.potential import Potential
from gdlphys.train.config import FitConfig
from gdlphys.train.loss import check_finite_loss, loss_terms, term_weights
from gdlphys.train.metrics import ErrorMetrics


def ema_average_fn(decay: float, warmup: bool):
    """AveragedModel's multi_avg_fn: an EMA of ``decay``, with the decay warmed up as torch_ema does."""

    @torch.no_grad()
    def average(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        if not (torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])):
            torch._foreach_copy_(averaged, current)  # integer buffers (e.g. lookups) are not averaged
            return
        d = decay
        if warmup:
            n = float(num_averaged)
            d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return average


class PotentialTask(L.LightningModule):
    """Fits a Potential to energies (per atom), forces and, where labelled, stress."""

    def __init__(self, potential: Potential, fit: FitConfig) -> None:
        super().__init__()
        self.potential = potential
        self.fit = fit
        # EMA of the weights: smoother validation curves and a better final model for little cost.
        self.ema = (
            AveragedModel(potential, multi_avg_fn=ema_average_fn(fit.ema_decay, fit.ema_warmup), use_buffers=True)
            if fit.ema_decay > 0
            else None
        )
        self.val_loss = MeanMetric().set_dtype(torch.float64)  # full precision for the plateau test
        self.val_metrics = ErrorMetrics()

    @property
    def inference_potential(self) -> Potential:
        """The weights used for validation and export: the EMA average when enabled."""
        return self.ema.module if self.ema is not None else self.potential

    def _predict(self, model: Potential, batch: dict[str, torch.Tensor], training: bool) -> dict[str, torch.Tensor]:
        want_stress = self.fit.stress_weight > 0 and keys.STRESS in batch and bool(batch[keys.PBC].all())
        with torch.set_grad_enabled(True):
            return model(batch, compute_forces=True, compute_stress=want_stress, create_graph=training)

    # --- the second stage: more energy weight, lower LR, over the last part of the budget -----------
    stage = 1

    def budget_used(self, batch_idx: int = 0) -> float:
        """Share of the run's budget spent: the larger of elapsed/max_time and epoch/max_epochs
        (counting the ``batch_idx`` batches of this epoch already done)."""
        trainer = self.trainer
        used = 0.0
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            batches = trainer.num_training_batches
            within = batch_idx / batches if isinstance(batches, int) and batches > 0 else 0.0
            used = (trainer.current_epoch + within) / trainer.max_epochs
        for callback in trainer.callbacks:
            if isinstance(callback, Timer) and callback._duration:
                used = max(used, callback.time_elapsed("train") / callback._duration)
        return used

    def on_train_epoch_end(self) -> None:
        # wall time of the epoch's training steps (validation not included): accuracy per minute, throughput
        self.log("train/epoch_seconds", time.perf_counter() - self._epoch_start, on_epoch=True, on_step=False)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        if self.stage == 1 and self.fit.stage_two_fraction > 0 and self.budget_used() >= 1.0 - self.fit.stage_two_fraction:
            self.stage = 2
            lr_note = ""
            if self.fit.lr_schedule == "plateau":
                for optimizer in self.trainer.optimizers:
                    for group in optimizer.param_groups:
                        group["lr"] = max(group["lr"] * self.fit.stage_two_lr_factor, self.fit.min_lr)
                for config in self.trainer.lr_scheduler_configs:  # a fresh plateau count for the new stage
                    config.scheduler.num_bad_epochs = 0
                lr_note = f", learning rate x{self.fit.stage_two_lr_factor:g}"
            self.print(f"gdlphys: stage two from epoch {self.current_epoch}: energy weight x{self.fit.stage_two_energy_factor:g}{lr_note}")

    def scheduled_lr(self, used: float) -> float:
        """The cosine schedule's LR after ``used`` (0..1) of the budget."""
        used = min(max(used, 0.0), 1.0)
        return self.fit.min_lr + 0.5 * (self.fit.lr - self.fit.min_lr) * (1.0 + math.cos(math.pi * used))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.fit.lr_schedule == "cosine":
            lr = self.scheduled_lr(self.budget_used(batch_idx))
            for optimizer in self.trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gdlphys_stage"] = self.stage

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.stage = int(checkpoint.get("gdlphys_stage", 1))

    def graph_weights(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch with its per-graph loss weights (``keys.LOSS_WEIGHT``, ...); here as it came."""
        return batch

    def _loss(
        self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], stage: int = 1
    ) -> dict[str, torch.Tensor]:
        return loss_terms(pred, batch, term_weights(self.fit, stage))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch = self.graph_weights(batch)
        pred = self._predict(self.potential, batch, training=True)
        parts = self._loss(pred, batch, self.stage)
        if self.world_size == 1:  # data-parallel: the all-reduced gradients are checked instead
            check_finite_loss(parts, self.current_epoch, self.global_step)
        n_graphs = int(batch[keys.NUM_ATOMS].shape[0])
        for name, value in parts.items():
            self.log(f"train/{name}", value.detach(), batch_size=n_graphs, prog_bar=name == "loss", on_epoch=True, on_step=False)
        return parts["loss"]

    @property
    def world_size(self) -> int:
        """Data-parallel processes of the run (1 without a Trainer, e.g. a step taken by hand)."""
        return self._trainer.world_size if self._trainer is not None else 1

    def on_before_optimizer_step(self, optimizer) -> None:
        # after DDP's all-reduce every rank holds the same gradients, so all stop together
        # (one rank raising alone would leave the others waiting in the next all-reduce)
        if self.world_size > 1:
            grads = [p.grad for p in self.potential.parameters() if p.grad is not None]
            if grads and not bool(torch.isfinite(torch.stack([g.detach().abs().sum() for g in grads]).sum())):
                raise FloatingPointError(
                    f"non-finite gradients at epoch {self.current_epoch}, step {self.global_step} (data-parallel "
                    "training): the fit diverged or a label is far off; try a lower fit.lr or fit.dtype float64"
                )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.potential)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        model = self.inference_potential
        pred = self._predict(model, batch, training=False)
        parts = self._loss(pred, batch)
        n_graphs = int(batch[keys.NUM_ATOMS].shape[0])
        self.val_loss.update(parts["loss"].detach(), n_graphs)
        self.val_metrics.update(pred, batch)

    def on_validation_epoch_end(self) -> None:
        val_loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", val_loss, prog_bar=True)
        if self.fit.lr_schedule == "plateau" and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            # Stepped here, not after the epoch as Lightning would: the checkpoint written at the end
            # of validation then holds the schedule of the next epoch, and a resumed run follows it.
            self.lr_schedulers().step(float(val_loss))
        for name, value in self.val_metrics.compute().items():
            if name != "n_frames":
                self.log(f"val/{name}", value.float(), prog_bar=name == "forces_mae")
        self.val_metrics.reset()

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Nothing: the plateau schedule is stepped in ``on_validation_epoch_end``."""

    def configure_optimizers(self):
        trainable = [p for p in self.potential.parameters() if p.requires_grad]  # frozen layers stay bit-identical
        optimizer = torch.optim.AdamW(trainable, lr=self.fit.lr, weight_decay=self.fit.weight_decay, amsgrad=True)
        if self.fit.lr_schedule == "cosine":  # set before each step in on_train_batch_start
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.fit.lr_factor, patience=self.fit.lr_patience, min_lr=self.fit.min_lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"}}

"""The fine-tuning LightningModule: frozen parts that still let a new element learn, slower steps
for the parent's weights, and a pull of them towards the parent's values against forgetting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from gdlphys import keys
from gdlphys.graph import collate
from gdlphys.models.potential import Potential
from gdlphys.train.config import FitConfig
from gdlphys.train.finetune_report import dataset_errors
from gdlphys.train.system import PotentialTask


def _buffer_name(kind: str, parameter: str) -> str:
    return f"{kind}__{parameter.replace('.', '__')}"


def force_sensitivity(
    potential: Potential, frames: Dataset, max_frames: int = 200, batch_size: int = 8, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Diagonal of J^T J / n, J = d(forces)/d(weights) over ``frames`` (n force components).

    ``sum_i S_i dw_i^2`` then estimates how much a change dw of the weights raises the force
    MSE on those frames (Gauss-Newton, diagonal): the importance of each weight for the
    original domain (the Fisher information of a Gaussian force likelihood, as in EWC). Each
    batch is probed once with random signs, which needs no labels and one backward pass."""
    generator = torch.Generator().manual_seed(seed)
    if len(frames) > max_frames:
        frames = Subset(frames, torch.randperm(len(frames), generator=generator)[:max_frames].tolist())
    named = [(n, p) for n, p in potential.named_parameters()]
    sums = {n: torch.zeros_like(p) for n, p in named}
    n_components = 0
    was_training = potential.training
    potential.eval()
    try:
        for batch in DataLoader(frames, batch_size=batch_size, collate_fn=collate):
            forces = potential(batch, compute_forces=True, create_graph=True)[keys.FORCES]
            signs = torch.randint(0, 2, forces.shape, generator=generator).to(forces) * 2 - 1
            grads = torch.autograd.grad((forces * signs).sum(), [p for _, p in named], allow_unused=True)
            for (name, _), grad in zip(named, grads):
                if grad is not None:
                    sums[name] += grad.detach() ** 2
            n_components += forces.numel()
    finally:
        potential.train(was_training)
    return {n: s / max(n_components, 1) for n, s in sums.items()}


class FinetuneTask(PotentialTask):
    """A :class:`PotentialTask` that fine-tunes.

    ``frozen`` parameters keep their starting values, except the entries that ``new_entries``
    marks (a new element's embedding row, self-connection slices and scale): freezing the
    embedding must not freeze the element it is being taught. Those parameters keep
    ``requires_grad``; a gradient hook zeroes the old entries and, after every step, they are
    copied back (so weight decay or anything else cannot move them either).

    ``old_lr_factor`` < 1 scales every step of the entries the parent already had by that factor
    (the new element's entries take full steps): with Adam, whose steps do not depend on the
    size of the gradient, this is how to give them a lower learning rate entry by entry. 0
    leaves the parent's weights as they are, so nothing on the old elements can change.
    ``old_lr_warmup`` ramps that factor linearly from 0 over the first so many optimizer steps:
    the first steps, whose gradients come from a new element that is still far off, then
    train the new entries and barely touch what the parent learnt (first the head, then the
    body, as in linear-probing-then-fine-tuning).

    ``replay_weight`` multiplies the loss terms of replayed frames (``keys.REPLAY``, set by
    :class:`~gdlphys.train.replay.ReplayDataModule`): rehearsal that weighs as much as it must.
    ``replay_energies=False`` leaves their energies out (replay at another level of theory
    than the new data: its absolute energies would contradict the new ones; forces rehearse).

    ``anchor_weight`` > 0 adds ``anchor_weight * sum_i S_i (w_i - w_start_i)^2`` over the
    trainable entries the parent already had (new-element entries are free), with ``S`` from
    ``anchor_importance`` (e.g. :func:`force_sensitivity` on the original domain: the penalty
    is then the predicted rise of its force MSE) or, without it, ``1 / n`` (a plain L2-SP mean).
    """

    def __init__(
        self,
        potential: Potential,
        fit: FitConfig,
        frozen: Sequence[str] = (),
        new_entries: Mapping[str, torch.Tensor] | None = None,
        anchor_weight: float = 0.0,
        old_lr_factor: float = 1.0,
        anchor_importance: Mapping[str, torch.Tensor] | None = None,
        replay_weight: float = 1.0,
        replay_energies: bool = True,
        old_lr_warmup: int = 0,
        max_forgetting: float | None = None,
        forgetting_monitor=None,
    ) -> None:
        super().__init__(potential, fit)
        if max_forgetting is not None and max_forgetting <= 0:
            raise ValueError(f"max_forgetting must be > 0, got {max_forgetting}")
        # Forgetting control: after each validation the original-domain force MAE of a few frames
        # (``forgetting_monitor``: (dataset, the parent's force MAE on it)) is measured; above
        # (1 + max_forgetting) x the parent's the replay weight doubles, below half that rise it
        # halves again (never under the weight asked for).
        self.max_forgetting, self.forgetting_monitor = max_forgetting, forgetting_monitor
        self.replay_weight_floor = float(replay_weight)
        if old_lr_warmup < 0:
            raise ValueError(f"old_lr_warmup must be >= 0 steps, got {old_lr_warmup}")
        self.old_lr_warmup = int(old_lr_warmup)
        if anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {anchor_weight}")
        if not 0.0 <= old_lr_factor <= 1.0:
            raise ValueError(f"old_lr_factor must be in [0, 1], got {old_lr_factor}")
        self.anchor_weight, self.old_lr_factor = float(anchor_weight), float(old_lr_factor)
        if replay_weight <= 0:
            raise ValueError(f"replay_weight must be > 0, got {replay_weight}")
        self.replay_weight, self.replay_energies = float(replay_weight), bool(replay_energies)
        new_entries = dict(new_entries or {})
        parameters = dict(potential.named_parameters())
        unknown = [name for name in frozen if name not in parameters]
        if unknown:
            raise ValueError(f"no such parameters to freeze: {', '.join(unknown)}")
        if old_lr_factor == 0.0:  # nothing old may move: freeze all but the new entries
            frozen = list(parameters)
        self.partly_frozen: list[str] = []
        self.fully_frozen: list[str] = []
        for name in frozen:
            parameter = parameters[name]
            trainable = new_entries.get(name)
            if trainable is not None and bool(trainable.any()):
                self.register_buffer(_buffer_name("trainable", name), trainable.clone(), persistent=False)
                self.register_buffer(_buffer_name("start", name), parameter.detach().clone(), persistent=False)
                parameter.requires_grad_(True)
                parameter.register_hook(self._gradient_mask(name))
                self.partly_frozen.append(name)
            else:
                parameter.requires_grad_(False)
                self.fully_frozen.append(name)

        # The old entries of every parameter that still trains: slowed, and anchored.
        self.old_trainable: list[str] = []
        for name, parameter in parameters.items():
            if not parameter.requires_grad:
                continue
            old = ~new_entries[name] if name in new_entries else torch.ones_like(parameter, dtype=torch.bool)
            if name in self.partly_frozen:
                old &= getattr(self, _buffer_name("trainable", name))
            if bool(old.any()):
                self.register_buffer(_buffer_name("old", name), old, persistent=False)
                self.old_trainable.append(name)
        self._before_step: dict[str, torch.Tensor] = {}
        self._factor = self.old_lr_factor  # this step's, fixed before the step (global_step moves during it)

        self.anchored: list[str] = []
        if self.anchor_weight > 0:
            n_old = sum(int(getattr(self, _buffer_name("old", n)).sum()) for n in self.old_trainable)
            for name in self.old_trainable:
                old = getattr(self, _buffer_name("old", name))
                if anchor_importance is not None:
                    importance = anchor_importance[name].detach().to(parameters[name]) * old
                else:
                    importance = old.to(parameters[name].dtype) / max(n_old, 1)
                self.register_buffer(_buffer_name("anchor", name), parameters[name].detach().clone(), persistent=False)
                self.register_buffer(_buffer_name("importance", name), importance, persistent=False)
                self.anchored.append(name)

    def _gradient_mask(self, name: str):
        buffer = _buffer_name("trainable", name)

        def hook(gradient: torch.Tensor) -> torch.Tensor:
            return gradient * getattr(self, buffer).to(gradient.dtype)

        return hook

    def anchor_penalty(self) -> torch.Tensor:
        """sum_i S_i (w_i - w_start_i)^2 over the anchored entries (0 when nothing is anchored)."""
        parameters = dict(self.potential.named_parameters())
        total = torch.zeros((), dtype=next(iter(parameters.values())).dtype, device=self.device)
        for name in self.anchored:
            start = getattr(self, _buffer_name("anchor", name))
            importance = getattr(self, _buffer_name("importance", name))
            total = total + (importance * (parameters[name] - start) ** 2).sum()
        return total

    def graph_weights(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replayed graphs (``keys.REPLAY``) weigh ``replay_weight``; their energies 0 when they are
        of another level of theory (``replay_energies=False``)."""
        replay = batch.get(keys.REPLAY)
        if replay is None:
            return batch
        batch = dict(batch)
        replayed = replay.to(batch[keys.POSITIONS].dtype)
        batch[keys.LOSS_WEIGHT] = 1.0 + (self.replay_weight - 1.0) * replayed
        if not self.replay_energies:
            own = batch.get(keys.ENERGY_LOSS_WEIGHT, torch.ones_like(replayed))
            batch[keys.ENERGY_LOSS_WEIGHT] = own * (1.0 - replayed)
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        if self.anchor_weight > 0 and self.anchored:
            penalty = self.anchor_penalty()
            n_graphs = int(batch[keys.NUM_ATOMS].shape[0])
            self.log("train/anchor", penalty.detach(), batch_size=n_graphs, on_epoch=True, on_step=False)
            loss = loss + self.anchor_weight * penalty
        return loss

    REPLAY_WEIGHT_CAP = 64.0

    def control_forgetting(self) -> float | None:
        """Measure the original domain and adapt ``replay_weight``; returns the relative rise."""
        if self.max_forgetting is None or self.forgetting_monitor is None:
            return None
        frames, parent_mae = self.forgetting_monitor
        rise = dataset_errors(self.inference_potential, frames)["forces_mae"] / parent_mae - 1.0
        if rise > self.max_forgetting:
            self.replay_weight = min(2.0 * self.replay_weight, self.REPLAY_WEIGHT_CAP)
        elif rise < 0.5 * self.max_forgetting:
            self.replay_weight = max(0.5 * self.replay_weight, self.replay_weight_floor)
        return rise

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            return
        rise = self.control_forgetting()
        if rise is not None:
            self.log("original/forces_mae_rise", rise)
            self.log("train/replay_weight", self.replay_weight)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["gdlphys_replay_weight"] = self.replay_weight

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.replay_weight = float(checkpoint.get("gdlphys_replay_weight", self.replay_weight))

    def old_factor(self) -> float:
        """This step's factor on the old entries' steps (the warm-up ramp times ``old_lr_factor``)."""
        if self.old_lr_warmup == 0:
            return self.old_lr_factor
        return self.old_lr_factor * min(1.0, (self.global_step + 1) / self.old_lr_warmup)

    def on_before_optimizer_step(self, optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        self._factor = self.old_factor()
        if self._factor < 1.0:
            parameters = dict(self.potential.named_parameters())
            self._before_step = {name: parameters[name].detach().clone() for name in self.old_trainable}

    @torch.no_grad()
    def slow_old_entries(self) -> None:
        """Scale this step of the old entries by :meth:`old_factor`."""
        factor = self._factor
        parameters = dict(self.potential.named_parameters())
        for name, before in self._before_step.items():
            old = getattr(self, _buffer_name("old", name))
            slowed = before + factor * (parameters[name] - before)
            parameters[name].copy_(torch.where(old, slowed, parameters[name]))
        self._before_step = {}

    @torch.no_grad()
    def restore_frozen_entries(self) -> None:
        parameters = dict(self.potential.named_parameters())
        for name in self.partly_frozen:
            trainable = getattr(self, _buffer_name("trainable", name))
            start = getattr(self, _buffer_name("start", name))
            parameters[name].copy_(torch.where(trainable, parameters[name], start))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.slow_old_entries()
        self.restore_frozen_entries()  # before the EMA sees the step
        super().on_train_batch_end(outputs, batch, batch_idx)

"""The one error accumulator: MAE and RMSE of every predicted quantity against its labels.

Validation (reduced across DDP ranks: it is a torchmetrics ``Metric`` whose states are sums),
``gdlphys eval`` and the fine-tuning report all accumulate through :class:`ErrorMetrics`.
A new metric is one entry of :data:`QUANTITIES`: a name and how to take (predicted, reference)
from a prediction and its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torchmetrics import Metric

from gdlphys import keys
from gdlphys.units import DEBYE_PER_E_ANGSTROM

Pair = tuple[torch.Tensor, torch.Tensor]
Batch = Mapping[str, torch.Tensor]


def _field(key: str) -> Callable[[Batch, Batch], Pair | None]:
    def pair(pred: Batch, batch: Batch) -> Pair | None:
        return (pred[key], batch[key]) if key in pred and key in batch else None

    return pair


def _energy_per_atom(pred: Batch, batch: Batch) -> Pair | None:
    if keys.ENERGY not in batch:
        return None
    n_atoms = batch[keys.NUM_ATOMS].to(pred[keys.ENERGY].dtype)
    return pred[keys.ENERGY] / n_atoms, batch[keys.ENERGY] / n_atoms


def _dipole_norm_debye(pred: Batch, batch: Batch) -> Pair | None:
    if keys.DIPOLE not in pred or keys.DIPOLE not in batch:
        return None
    return (torch.linalg.vector_norm(pred[keys.DIPOLE], dim=-1) * DEBYE_PER_E_ANGSTROM,
            torch.linalg.vector_norm(batch[keys.DIPOLE], dim=-1) * DEBYE_PER_E_ANGSTROM)


QUANTITIES: dict[str, Callable[[Batch, Batch], Pair | None]] = {
    "energy": _field(keys.ENERGY),  # eV per structure
    "energy_per_atom": _energy_per_atom,  # eV/atom
    "forces": _field(keys.FORCES),  # eV/Å per component
    "stress": _field(keys.STRESS),  # eV/Å^3 per component
    "dipole": _field(keys.DIPOLE),  # e*Å per component
    "dipole_debye_norm": _dipole_norm_debye,  # |mu| in Debye
}


class ErrorMetrics(Metric):
    """Sums of |error| and error^2 per quantity (float64), and the count of frames.

    ``compute()`` gives ``{name}_mae`` and ``{name}_rmse`` for every quantity seen, and ``n_frames``.
    """

    full_state_update = False

    def __init__(self, quantities: tuple[str, ...] = tuple(QUANTITIES)) -> None:
        super().__init__()
        unknown = set(quantities) - set(QUANTITIES)
        if unknown:
            raise ValueError(f"unknown quantities {sorted(unknown)}; known: {', '.join(QUANTITIES)}")
        self.quantities = tuple(quantities)
        for name in self.quantities:
            for state in ("abs", "sq", "count"):
                self.add_state(f"{name}_{state}", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_frames", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Batch, batch: Batch) -> None:
        self.n_frames += batch[keys.NUM_ATOMS].shape[0]
        for name in self.quantities:
            pair = QUANTITIES[name](pred, batch)
            if pair is None:
                continue
            diff = pair[0].detach().double() - pair[1].detach().double()
            setattr(self, f"{name}_abs", getattr(self, f"{name}_abs") + diff.abs().sum())
            setattr(self, f"{name}_sq", getattr(self, f"{name}_sq") + (diff**2).sum())
            setattr(self, f"{name}_count", getattr(self, f"{name}_count") + diff.numel())

    def add_states(self, states: dict[str, torch.Tensor]) -> None:
        """Add sums taken elsewhere (another process's shard, ``metric_state``) as if by update()."""
        for name, value in states.items():
            setattr(self, name, getattr(self, name) + value)
        self._update_count += 1  # torchmetrics warns on compute() before any update

    def seen(self) -> list[str]:
        """The quantities that had labels in some batch."""
        return [name for name in self.quantities if float(getattr(self, f"{name}_count")) > 0]

    def compute(self) -> dict[str, torch.Tensor]:
        out = {"n_frames": self.n_frames}
        for name in self.seen():
            count = getattr(self, f"{name}_count")
            out[f"{name}_mae"] = getattr(self, f"{name}_abs") / count
            out[f"{name}_rmse"] = torch.sqrt(getattr(self, f"{name}_sq") / count)
        return out

    def as_floats(self) -> dict[str, float]:
        """``compute()`` as plain numbers (``n_frames`` an int)."""
        values = {k: float(v) for k, v in self.compute().items()}
        values["n_frames"] = int(values["n_frames"])
        return values


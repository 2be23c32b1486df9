"""The one training loss: weighted mean squared errors of every labelled quantity.

Training, validation, fine-tuning replay (weighted frames, frames whose energies are of another
level of theory) and the second stage all call :func:`loss_terms`. How much a graph counts is
data, not code: the batch may carry ``keys.LOSS_WEIGHT`` (every term of the graph) and a weight
of one term (``keys.ENERGY_LOSS_WEIGHT``, ...: 0 where a frame lacks that label, or where its
energy is of another level of theory) per graph; without them every graph counts 1. Each term
is the plain mean of the weighted squared errors over its rows.

A new loss term is one entry of :data:`TERMS` (with its weight field in ``keys`` and a
``<name>_weight`` in :class:`FitConfig`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from gdlphys import keys
from gdlphys.train.config import FitConfig


def _per_atom_energy(pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    n_atoms = batch[keys.NUM_ATOMS].to(pred[keys.ENERGY].dtype)
    return (pred[keys.ENERGY] - batch[keys.ENERGY]) / n_atoms


def _difference(key: str) -> Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], torch.Tensor]:
    def residual(pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return pred[key] - batch[key]

    return residual


@dataclass(frozen=True)
class Term:
    """One loss term: the field it compares, whether its rows are atoms or graphs, its residual."""

    key: str
    weight_key: str  # the batch field of this term's per-graph weight
    per_atom: bool
    residual: Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], torch.Tensor]


TERMS: dict[str, Term] = {
    # energy per atom, so that large and small molecules weigh alike
    "energy": Term(keys.ENERGY, keys.ENERGY_LOSS_WEIGHT, False, _per_atom_energy),
    "forces": Term(keys.FORCES, keys.FORCES_LOSS_WEIGHT, True, _difference(keys.FORCES)),
    "stress": Term(keys.STRESS, keys.STRESS_LOSS_WEIGHT, False, _difference(keys.STRESS)),
    "dipole": Term(keys.DIPOLE, keys.DIPOLE_LOSS_WEIGHT, False, _difference(keys.DIPOLE)),
}


def term_weights(fit: FitConfig, stage: int = 1) -> dict[str, float]:
    """The weight of each term: ``fit.<name>_weight``, the energy's raised in the second stage."""
    weights = {name: float(getattr(fit, f"{name}_weight")) for name in TERMS}
    if stage == 2:
        weights["energy"] *= fit.stage_two_energy_factor
    return weights


def _graph_weights(batch: Mapping[str, torch.Tensor], term: Term, dtype: torch.dtype) -> torch.Tensor | None:
    weight = batch.get(keys.LOSS_WEIGHT)
    if term.weight_key in batch:
        own = batch[term.weight_key]
        weight = own if weight is None else weight * own
    return None if weight is None else weight.to(dtype)


def loss_terms(
    pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    """Each term's (graph-weighted) mean squared error where both prediction and label exist, and
    ``loss``, their sum weighted by ``weights`` (a term whose weight is 0 is still reported)."""
    parts: dict[str, torch.Tensor] = {}
    for name, term in TERMS.items():
        if term.key not in pred or term.key not in batch:
            continue
        squared = term.residual(pred, batch) ** 2
        graph_weight = _graph_weights(batch, term, squared.dtype)
        if graph_weight is not None:
            row_weight = graph_weight[batch[keys.BATCH]] if term.per_atom else graph_weight
            squared = squared * row_weight.view(-1, *([1] * (squared.dim() - 1)))
        parts[name] = torch.mean(squared)
    if not parts:
        raise ValueError("the batch has no label that the potential predicts (energy, forces, stress or dipole)")
    parts["loss"] = sum(weights[name] * value for name, value in parts.items())
    return parts


def check_finite_loss(parts: Mapping[str, torch.Tensor], epoch: int, step: int) -> None:
    """Raise FloatingPointError naming the non-finite terms of a training loss: a NaN step would
    make every weight NaN, and the run would go on to write a potential that predicts NaN."""
    if bool(torch.isfinite(parts["loss"])):  # one device sync a step (the forward already makes one)
        return
    bad = [f"{name} term is {float(value.detach())}" for name, value in parts.items() if name != "loss" and not torch.isfinite(value)]
    what = ", ".join(bad) or f"loss is {float(parts['loss'].detach())}"
    raise FloatingPointError(
        f"non-finite training loss at epoch {epoch}, step {step}: {what}; "
        "training stopped. The data were checked finite when read, so the fit diverged or a label is far off: "
        "try a lower fit.lr or fit.dtype float64, and see the label ranges with gdlphys data info FILE"
    )

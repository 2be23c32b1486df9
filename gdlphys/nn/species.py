"""Blocks with per-species parameters, and how they grow new species.

A block that holds per-species parameters subclasses :class:`SpeciesDependent` and says, for
its own parameters, (1) what they become with more species (:meth:`grown_state`) and (2) which
of their entries belong to given species (:meth:`species_masks`). Fine-tuning surgery
(:mod:`gdlphys.models.surgery`) walks the potential's named modules and asks each such block:
a new species-dependent block needs no edit anywhere else.

New species are appended after the old ones; their rows start as ``mix @ old_rows``, with
``mix`` [n_new, n_old] chosen by the surgery (the mean element, or an analogue's copy). An old
species keeps bit-for-bit its output: e3nn's path normalisation ``path_weight`` depends on the
fan-in (here 1/sqrt(n_species)), so copied slices are rescaled by ``old / new`` path weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

__all__ = ["SpeciesDependent", "grow_linear", "grow_rows", "grow_species_product"]


class SpeciesDependent(nn.Module):
    """A module whose parameters (or buffers) have entries per species."""

    def grown_state(self, grown: nn.Module, n_old: int, mix: torch.Tensor) -> dict[str, torch.Tensor]:
        """State entries (names relative to this module) of ``grown`` (the same block built for more
        species) that reproduce this block on its ``n_old`` species; new rows are ``mix @ old rows``."""
        raise NotImplementedError

    def species_masks(self, species: Sequence[int]) -> dict[str, torch.Tensor]:
        """Parameter name (relative) -> boolean mask, parameter-shaped, of the entries of the species
        with indices ``species``."""
        raise NotImplementedError


def grow_linear(old: o3.Linear, new: o3.Linear, n_old: int, mix: torch.Tensor) -> torch.Tensor:
    """Weight of ``new`` (one-hot species input, more species) reproducing ``old`` on the old species."""
    weight = torch.zeros_like(new.weight)
    pairs = zip(old.weight_views(yield_instruction=True), new.weight_views(weight, yield_instruction=True))
    for (_, ins_old, view_old), (_, ins_new, view_new) in pairs:
        rows = view_old.detach() * (ins_old.path_weight / ins_new.path_weight)
        view_new[:n_old] = rows
        view_new[n_old:] = mix.to(rows) @ rows
    return weight


def grow_species_product(old: o3.TensorProduct, new: o3.TensorProduct, n_old: int, mix: torch.Tensor) -> torch.Tensor:
    """Same for a tensor product whose second input is the species one-hot ([mul_in, n_species, mul_out] views)."""
    weight = torch.zeros_like(new.weight)
    pairs = zip(old.weight_views(yield_instruction=True), new.weight_views(weight, yield_instruction=True))
    for (_, ins_old, view_old), (_, ins_new, view_new) in pairs:
        if ins_old.connection_mode != "uvw" or view_old.shape[1] != n_old:
            raise ValueError(f"unexpected species path {ins_old}: cannot grow its species axis")
        rows = view_old.detach() * (ins_old.path_weight / ins_new.path_weight)
        view_new[:, :n_old] = rows
        view_new[:, n_old:] = torch.einsum("ak,ikj->iaj", mix.to(rows), rows)
    return weight


def grow_rows(rows: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """A ``[n_old, ...]`` per-species tensor with the new species' rows (``mix @ rows``) appended."""
    rows = rows.detach()
    return torch.cat([rows, torch.einsum("an,n...->a...", mix.to(rows), rows)])


def linear_masks(linear: o3.Linear, species: Sequence[int]) -> torch.Tensor:
    """Mask of an ``o3.Linear`` on the species one-hot: the rows of ``species``."""
    mask = torch.zeros_like(linear.weight, dtype=torch.bool)
    for view in linear.weight_views(mask):
        view[list(species)] = True
    return mask


def species_product_masks(product: o3.TensorProduct, species: Sequence[int]) -> torch.Tensor:
    """Mask of a tensor product whose second input is the species one-hot: the slices of ``species``."""
    mask = torch.zeros_like(product.weight, dtype=torch.bool)
    for view in product.weight_views(mask):
        view[:, list(species)] = True
    return mask


def row_masks(rows: torch.Tensor, species: Sequence[int]) -> torch.Tensor:
    """Mask of a ``[n_species, ...]`` tensor: the rows of ``species``."""
    mask = torch.zeros_like(rows, dtype=torch.bool)
    mask[list(species)] = True
    return mask

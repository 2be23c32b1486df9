"""Edges: the vector of an edge, the one formula the neighbour search and the models share."""

from __future__ import annotations

import torch
from torch import Tensor

COINCIDENT = 1e-6  # Å; closer pairs are one atom given twice, and would give NaN directions


def edge_vectors(positions: Tensor, edge_index: Tensor, shifts: Tensor, cell: Tensor, batch: Tensor) -> Tensor:
    """[n_edges, 3] vectors ``positions[j] - positions[i] + shifts @ cell[batch[i]]``.

    Differentiable with respect to ``positions`` and ``cell`` (forces and stress).
    """
    source, centre = edge_index[0], edge_index[1]
    lattice_shift = torch.einsum("ek,ekl->el", shifts.to(cell.dtype), cell[batch[centre]])
    return positions[source] - positions[centre] + lattice_shift


def coincident_error(centre: int, source: int, shift: list) -> ValueError:
    return ValueError(
        f"atoms {centre} and {source} sit at the same place (closer than {COINCIDENT} Å, shift {list(shift)})"
    )


def no_edges(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    return torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, 3, dtype=dtype, device=device)

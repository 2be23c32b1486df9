"""One structure (numbers, positions, cell, pbc) -> a single-graph dict with its neighbour list."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gdlphys import keys
from gdlphys.graph.neighbours import radius_graph

def structure_graph(
    numbers,
    positions,
    cell=None,
    pbc=None,
    *,
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """One structure (numpy arrays or tensors) -> a single-graph dict with its neighbour list."""
    numbers_t = torch.as_tensor(np.asarray(numbers), dtype=torch.long, device=device).reshape(-1)
    positions_t = torch.as_tensor(np.asarray(positions), dtype=dtype, device=device).reshape(-1, 3)
    cell_np = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc_np = np.zeros(3, dtype=bool) if pbc is None else np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cell_t = torch.as_tensor(cell_np, dtype=dtype, device=device).reshape(1, 3, 3)
    pbc_t = torch.as_tensor(pbc_np, device=device).reshape(1, 3)
    n = numbers_t.shape[0]
    batch = torch.zeros(n, dtype=torch.long, device=device)
    edge_index, shifts = radius_graph(positions_t, cutoff, batch=batch, cell=cell_t, pbc=pbc_t)
    return {
        keys.ATOMIC_NUMBERS: numbers_t,
        keys.POSITIONS: positions_t,
        keys.CELL: cell_t,
        keys.PBC: pbc_t,
        keys.BATCH: batch,
        keys.PTR: torch.tensor([0, n], device=device),
        keys.NUM_ATOMS: torch.tensor([n], device=device),
        keys.EDGE_INDEX: edge_index,
        keys.EDGE_SHIFTS: shifts,
    }

"""The neighbour search: every directed pair within a cutoff, over all periodic images, never truncated."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

from gdlphys.graph.edges import no_edges
from gdlphys.graph.torch_cluster_backend import torch_cluster_edges
from gdlphys.graph.vesin_backend import vesin_edges

Backend = Literal["auto", "vesin", "torch-cluster"]  # "auto": vesin for CPU tensors, torch-cluster otherwise


def radius_graph(  # never truncates: vesin has no cap, torch-cluster's max_num_neighbors is sized inside
    positions: Tensor,
    cutoff: float,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    *,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """All directed pairs closer than ``cutoff``, over every periodic image.

    Args:
        positions: [n_atoms, 3] float, Å; need not lie inside the cell.
        cutoff: Å; pairs with ``0 < |vector| < cutoff`` are edges.
        batch: [n_atoms] int64, graph of each atom (default: one graph); need not be sorted.
        cell: [n_graphs, 3, 3], rows are lattice vectors (default: zeros). Rows along
            non-periodic directions are ignored and may be zero.
        pbc: [n_graphs, 3] bool (default: non-periodic).
        backend: neighbour search; ``"auto"`` takes vesin (linear-scaling cell list) for
            CPU tensors and torch-cluster for GPU tensors. ``"vesin"`` on a GPU tensor
            searches on the CPU and moves the result back; inputs past vesin's limits
            (a cutoff under 1e-6 Å, atoms ~1e4 cells away) go to torch-cluster.

    Returns:
        ``(edge_index [2, n_edges] int64, shifts [n_edges, 3])`` on the device and in the
        dtype of ``positions``, following the convention of :mod:`gdlphys.keys`. Both
        directions of each pair are listed, in no particular order; an atom neighbours its
        own periodic images when the cell is small. No neighbour is ever dropped.

    Raises:
        ValueError: on a bad shape, a non-finite position, a non-positive cutoff, a
            degenerate cell along a periodic direction, two atoms at the same place, or an
            unknown backend.
    """
    if backend not in get_args(Backend):
        raise ValueError(f"backend must be one of {get_args(Backend)}, got {backend!r}")
    positions, batch, cell, pbc, cutoff = _checked_inputs(positions, cutoff, batch, cell, pbc)
    out_dtype = positions.dtype
    if positions.shape[0] == 0:
        return no_edges(positions.device, out_dtype)
    # torch-cluster's kd-tree, the 3x3 solves and the exact cut want single or double precision
    work_dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    if work_dtype != out_dtype:
        positions, cell = positions.to(work_dtype), cell.to(work_dtype)
    if backend == "auto":
        backend = "vesin" if positions.device.type == "cpu" else "torch-cluster"
    with torch.no_grad():
        if backend == "vesin":
            edge_index, shifts = vesin_edges(positions, cutoff, batch, cell, pbc)
        else:
            edge_index, shifts = torch_cluster_edges(positions, cutoff, batch, cell, pbc)
    return edge_index, shifts if work_dtype == out_dtype else shifts.to(out_dtype)


def _checked_inputs(
    positions: Tensor, cutoff: float, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """Validate and fill in defaults; returns tensors on the device of ``positions``."""
    cutoff = float(cutoff)
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff}")
    if positions.dim() != 2 or positions.shape[1] != 3 or not positions.is_floating_point():
        got = f"{positions.dtype} {tuple(positions.shape)}"
        raise ValueError(f"positions must be a float tensor of shape [n_atoms, 3], got {got}")
    positions = positions.detach()
    device, n_atoms = positions.device, positions.shape[0]
    # few, cheap calls: small molecules are searched again at every MD step
    if not bool(torch.isfinite(positions).all()):
        atom = int(torch.nonzero(~torch.isfinite(positions).all(dim=1))[0])
        raise ValueError(f"position of atom {atom} is not finite: {positions[atom].tolist()}")

    if batch is None:
        batch = torch.zeros(n_atoms, dtype=torch.long, device=device)
        last_graph = 0
    else:
        if batch.shape != (n_atoms,) or batch.is_floating_point():
            got = f"{batch.dtype} {tuple(batch.shape)}"
            raise ValueError(f"batch must be an integer tensor of shape [{n_atoms}], got {got}")
        batch = batch.to(device=device, dtype=torch.long)
        first_graph, last_graph = (int(b) for b in torch.aminmax(batch)) if n_atoms else (0, 0)
        if first_graph < 0:
            raise ValueError("batch holds a negative graph index")

    if cell is not None and cell.dim() == 3:
        n_graphs = cell.shape[0]
    elif pbc is not None and pbc.dim() == 2:
        n_graphs = pbc.shape[0]
    else:
        n_graphs = last_graph + 1
    if n_atoms and last_graph >= n_graphs:
        raise ValueError(f"batch refers to graph {last_graph} but cell/pbc describe {n_graphs} graphs")

    if cell is None:
        if pbc is not None and bool(pbc.any()):
            raise ValueError("pbc is periodic but no cell was given")
        cell = positions.new_zeros(n_graphs, 3, 3)
    else:
        if cell.shape != (n_graphs, 3, 3):
            raise ValueError(f"cell must have shape [n_graphs, 3, 3] = [{n_graphs}, 3, 3], got {tuple(cell.shape)}")
        cell = cell.detach().to(device=device, dtype=positions.dtype)
        if not bool(torch.isfinite(cell).all()):
            bad = ~torch.isfinite(cell).flatten(1).all(dim=1)
            raise ValueError(f"cell of graph {int(torch.nonzero(bad)[0])} is not finite")
    if pbc is None:
        pbc = torch.zeros(n_graphs, 3, dtype=torch.bool, device=device)
    if pbc.shape != (n_graphs, 3):
        raise ValueError(f"pbc must have shape [n_graphs, 3] = [{n_graphs}, 3], got {tuple(pbc.shape)}")
    pbc = pbc.to(device=device, dtype=torch.bool)
    return positions, batch, cell, pbc, cutoff

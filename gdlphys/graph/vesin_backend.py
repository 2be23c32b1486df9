"""The ``"vesin"`` back end of :func:`gdlphys.graph.radius_graph`: vesin's C++ cell list on the CPU."""

from __future__ import annotations

import math

import numpy as np
import torch
import vesin
from torch import Tensor

from gdlphys.graph.edges import COINCIDENT, coincident_error, edge_vectors, no_edges
from gdlphys.graph.lattice import lattice_basis
from gdlphys.graph.torch_cluster_backend import torch_cluster_edges

# relative; vesin's float64 lengths this close to the cutoff are measured again by edge_vectors,
# well above the rounding of that formula on positions of up to ~1e3 Å (float32) or ~1e6 Å (float64)
_RECHECK_BAND = {torch.float32: 1e-4, torch.float64: 1e-9}
# vesin refuses cutoffs below 1e-6 Å, and indexes its cells with int32, so atoms too many
# cells away from the origin would overflow it (it caps a cell list at 1e5 cells): such
# rare inputs go to torch-cluster instead
_VESIN_MIN_CUTOFF = 1e-6
_VESIN_MAX_CELLS_AWAY = 1e4


def vesin_edges(positions: Tensor, cutoff: float, batch: Tensor, cell: Tensor, pbc: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`radius_graph` on vesin's cell list, one search per graph (on the CPU)."""
    device, work_dtype = positions.device, positions.dtype
    if device.type != "cpu":
        positions, batch, cell, pbc = positions.cpu(), batch.cpu(), cell.cpu(), pbc.cpu()
    n_graphs, n_atoms = cell.shape[0], positions.shape[0]
    periodic = pbc.numpy()
    # vesin reads the rows of open directions too: give it the completed, invertible basis
    boxes = lattice_basis(cell.double().numpy(), periodic) if periodic.any() else np.zeros((n_graphs, 3, 3))
    if cutoff <= _VESIN_MIN_CUTOFF or _too_far_for_vesin(positions, boxes, periodic):
        edge_index, shifts = torch_cluster_edges(positions, cutoff, batch, cell, pbc)
        return edge_index.to(device), shifts.to(device)
    order = None  # sorted -> given atom indices, where the graphs' atoms are not contiguous
    if n_graphs == 1:
        ptr = [0, n_atoms]
    else:
        if not bool((batch[1:] >= batch[:-1]).all()):
            order = torch.argsort(batch, stable=True)
            positions = positions[order]
        ptr = [0, *torch.cumsum(torch.bincount(batch, minlength=n_graphs), dim=0).tolist()]
    points = positions.to(torch.float64).numpy()
    float_type = np.float32 if work_dtype == torch.float32 else np.float64
    # each pair once (half the search and its memory), both directions written out below
    search = vesin.NeighborList(cutoff=cutoff, full_list=False, n_threads=torch.get_num_threads())

    edges, shifts = [], []
    for g in range(n_graphs):
        start, stop = ptr[g], ptr[g + 1]
        if stop == start:
            continue
        # views into `search`'s buffers (copy=False), valid until its next compute
        pairs, cell_shifts, lengths = search.compute(points[start:stop], boxes[g], periodic[g], "PSd", copy=False)
        if lengths.size == 0:
            continue
        if lengths.min() < COINCIDENT:
            e = int(np.argmax(lengths < COINCIDENT))
            centre, source = (start + int(a) for a in pairs[e])
            if order is not None:
                centre, source = int(order[centre]), int(order[source])
            raise coincident_error(centre, source, cell_shifts[e].tolist())
        near = np.flatnonzero(lengths >= cutoff * (1.0 - _RECHECK_BAND[work_dtype]))
        if near.size:  # decide these with the models' own formula and dtype, as torch-cluster's path does
            pair = torch.from_numpy(pairs[near].astype(np.int64))
            local_batch = torch.zeros(stop - start, dtype=torch.long)
            vectors = edge_vectors(
                positions[start:stop], pair.flip(1).t(), torch.from_numpy(cell_shifts[near]).to(work_dtype),
                cell[g : g + 1], local_batch,
            )  # fmt: skip
            n_kept = _drop_rows(near[(vectors.norm(dim=1) >= cutoff).numpy()], pairs, cell_shifts)
        else:
            n_kept = pairs.shape[0]
        edge, shift = _both_directions(pairs[:n_kept], cell_shifts[:n_kept], float_type)
        if start:
            edge += start
        edges.append(torch.from_numpy(edge))
        shifts.append(torch.from_numpy(shift))
    if not edges:
        return no_edges(device, work_dtype)
    edge_index = edges[0] if len(edges) == 1 else torch.cat(edges, dim=1)
    shift = shifts[0] if len(shifts) == 1 else torch.cat(shifts)
    if order is not None:
        edge_index = order[edge_index]
    return edge_index.to(device), shift.to(device)


def _too_far_for_vesin(positions: Tensor, boxes: np.ndarray, periodic: np.ndarray) -> bool:
    """Whether some atom may lie more than _VESIN_MAX_CELLS_AWAY cells from the origin
    along a periodic axis (a bound: |fractional_k| <= |r| * |reciprocal_k|)."""
    if not periodic.any():
        return False
    reciprocal = np.linalg.norm(np.linalg.inv(boxes), axis=-2)  # [n_graphs, 3]: |column k| of the inverse
    furthest = float(positions.abs().max()) * math.sqrt(3.0)
    return furthest * float(reciprocal[periodic].max()) > _VESIN_MAX_CELLS_AWAY


def _both_directions(pairs: np.ndarray, cell_shifts: np.ndarray, float_type: type) -> tuple[np.ndarray, np.ndarray]:
    """Edges both ways from vesin's half list: its pair (i, j, S), vector r_j - r_i + S @ box,
    is our edge j -> i with shift S, and i -> j with shift -S."""
    n = pairs.shape[0]
    first, second = pairs.view(np.int64).T
    edge = np.empty((2, 2 * n), dtype=np.int64)
    edge[0, :n], edge[1, :n] = second, first
    edge[0, n:], edge[1, n:] = first, second
    shifts = np.empty((2 * n, 3), dtype=float_type)
    shifts[:n] = cell_shifts
    np.negative(cell_shifts, out=shifts[n:])
    return edge, shifts


def _drop_rows(rows: np.ndarray, *arrays: np.ndarray) -> int:
    """Remove a few distinct ``rows`` from equally long arrays in place, by moving rows from
    the end into the holes (a boolean mask would copy every row); returns the rows kept."""
    n_total = arrays[0].shape[0]
    n_kept = n_total - rows.size
    if rows.size:
        holes = rows[rows < n_kept]
        movers = np.setdiff1d(np.arange(n_kept, n_total), rows)  # as many as holes
        for array in arrays:
            array[holes] = array[movers]
    return n_kept

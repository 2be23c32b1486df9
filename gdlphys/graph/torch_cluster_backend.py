"""The ``"torch-cluster"`` back end of :func:`gdlphys.graph.radius_graph`: a radius search over
the periodic images of a padded box, its neighbour cap grown until nothing is truncated."""

from __future__ import annotations

import math

import torch
import torch_cluster
from torch import Tensor

from gdlphys.graph.edges import COINCIDENT, coincident_error, edge_vectors
from gdlphys.graph.lattice import lattice_basis, padded_images

_SEARCH_MARGIN = 1e-4  # relative; torch-cluster searches this much beyond the cutoff
_MIN_MAX_NEIGHBORS = 16  # below this a retry costs more than the memory it saves


def torch_cluster_edges(
    positions: Tensor, cutoff: float, batch: Tensor, cell: Tensor, pbc: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`radius_graph` on torch-cluster over a padded box of periodic images."""
    # torch-cluster needs atoms sorted by graph; `order` maps sorted -> given indices
    order = torch.argsort(batch, stable=True)
    pos, graph = positions[order], batch[order]
    n_graphs = cell.shape[0]

    basis = lattice_basis(cell.double().cpu().numpy(), pbc.cpu().numpy())
    basis_inv = torch.linalg.inv(torch.as_tensor(basis, dtype=cell.dtype, device=cell.device))
    frac = torch.einsum("nk,nkl->nl", pos, basis_inv[graph])
    # integer lattice translation that brings each atom into [0, 1) along periodic axes
    wrap = torch.where(pbc[graph], -torch.floor(frac), torch.zeros_like(frac))
    pos = pos + torch.einsum("nk,nkl->nl", wrap, cell[graph])
    frac = frac + wrap

    radius = cutoff * (1.0 + _SEARCH_MARGIN)
    # |Δfrac_k| <= |Δr| * |reciprocal_k|, so images beyond this pad cannot be neighbours
    pad = radius * basis_inv.norm(dim=-2) + _SEARCH_MARGIN
    pad = torch.where(pbc, pad, torch.full_like(pad, math.inf))
    n_images = torch.where(pbc, torch.ceil(pad), torch.zeros_like(pad)).long()
    image_atom, image_shift = padded_images(frac, graph, n_images, pad)
    image_pos = pos[image_atom] + torch.einsum("nk,nkl->nl", image_shift, cell[graph[image_atom]])

    centre, hit = _radius_search(image_pos, graph[image_atom], pos, graph, radius, n_graphs)
    source = image_atom[hit]
    shifts = image_shift[hit] + wrap[source] - wrap[centre]
    not_self = (source != centre) | (shifts != 0).any(dim=1)
    edge_index = torch.stack([order[source[not_self]], order[centre[not_self]]])
    shifts = shifts[not_self]

    # the exact cut, with the very formula the models differentiate
    lengths = edge_vectors(positions, edge_index, shifts, cell, batch).norm(dim=1)
    keep = lengths < cutoff
    edge_index, shifts, lengths = edge_index[:, keep], shifts[keep], lengths[keep]
    coincident = lengths < COINCIDENT
    if bool(coincident.any()):
        e = int(torch.nonzero(coincident)[0])
        source, centre = edge_index[:, e].tolist()
        raise coincident_error(centre, source, shifts[e].tolist())
    return edge_index, shifts


def _radius_search(
    candidates: Tensor, candidate_graph: Tensor, queries: Tensor, query_graph: Tensor, radius: float, n_graphs: int
) -> tuple[Tensor, Tensor]:
    """(query index, candidate index) of all pairs of the same graph closer than ``radius``.

    torch-cluster silently keeps only ``max_num_neighbors`` hits per query, so every query
    that reaches the cap is searched again with twice the cap until none does.
    """
    cap = _initial_max_neighbors(candidates, candidate_graph, radius, n_graphs)
    pending = torch.arange(queries.shape[0], device=queries.device)
    query_hits, candidate_hits = [], []
    while pending.numel() > 0:
        query, candidate = torch_cluster.radius(  # rows: y (queries) first, then x
            candidates,
            queries[pending],
            radius,
            candidate_graph,
            query_graph[pending],
            max_num_neighbors=cap,
            batch_size=n_graphs,
        )
        saturated = torch.bincount(query, minlength=pending.shape[0]) >= cap
        complete = ~saturated[query]
        query_hits.append(pending[query[complete]])
        candidate_hits.append(candidate[complete])
        pending = pending[saturated]
        cap *= 2
    return torch.cat(query_hits), torch.cat(candidate_hits)


def _initial_max_neighbors(candidates: Tensor, candidate_graph: Tensor, radius: float, n_graphs: int) -> int:
    """A cap on neighbours per query from the density of each graph's bounding box
    (a guess: :func:`_radius_search` doubles it where it falls short)."""
    index = candidate_graph.unsqueeze(1).expand(-1, 3)
    low = candidates.new_full((n_graphs, 3), math.inf).scatter_reduce(0, index, candidates, "amin")
    high = candidates.new_full((n_graphs, 3), -math.inf).scatter_reduce(0, index, candidates, "amax")
    count = torch.bincount(candidate_graph, minlength=n_graphs)
    volume = (high - low).clamp(min=radius).prod(dim=1)
    expected = count * (4.0 / 3.0 * math.pi * radius**3) / volume
    guess = 2 ** math.ceil(math.log2(1.5 * float(expected.max()) + 1))
    # a cap above the number of candidates of every graph can never truncate
    return int(min(max(guess, _MIN_MAX_NEIGHBORS), int(count.max()) + 1))

"""Radius graphs with periodic shifts, edge vectors, and batching of graph dicts.

Conventions (see :mod:`gdlphys.keys`): edge ``e`` carries a message from source
``j = edge_index[0, e]`` to centre ``i = edge_index[1, e]``; its vector is
``positions[j] - positions[i] + shifts[e] @ cell[batch[i]]``, where the rows of
``cell`` are the lattice vectors. Shifts are integer-valued tensors in the float
dtype of the positions, and refer to the positions as given (not wrapped).

Two neighbour-search backends sit behind :func:`radius_graph`:

- ``"vesin"`` (the default for CPU tensors): vesin's C++ cell list, one call per graph,
  linear in the number of atoms. It handles triclinic, mixed-periodic and small cells
  (an atom neighbouring its own images) and positions outside the cell itself, and has
  no neighbour cap. It is asked for each pair once and both directions are written out
  here, which costs less than its own full list: on one CPU thread, 64,000 random atoms
  at water density with a 5 Å cutoff take ~0.3 s, against ~0.37 s for vesin's full list
  and ~3.3 s for the torch-cluster path. A cell list written in torch was the other
  option: more code to keep correct, and no way past vesin's C++ on the same algorithm.
- ``"torch-cluster"`` (the default for GPU tensors): torch-cluster's search over the
  periodic images of a padded box, with ``max_num_neighbors`` grown until nothing is
  truncated. On the CPU it is ~10x slower than vesin and grows faster than linearly with
  the box, so there it runs only on request (the tests check both against ASE).

Both decide the pairs nearest the cutoff with :func:`edge_vectors` in the dtype of the
positions: the very formula the models differentiate, so every edge they see is shorter
than the cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np
import torch
import torch_cluster
import vesin
from torch import Tensor

from gdlphys import keys

__all__ = ["Backend", "collate", "edge_vectors", "radius_graph", "structure_graph"]

Backend = Literal["auto", "vesin", "torch-cluster"]  # "auto": vesin for CPU tensors, torch-cluster otherwise

_DEGENERATE_CELL_TOL = 1e-6  # |det| / product of periodic vector lengths below this: no lattice
_SEARCH_MARGIN = 1e-4  # relative; torch-cluster searches this much beyond the cutoff
# relative; vesin's float64 lengths this close to the cutoff are measured again by edge_vectors,
# well above the rounding of that formula on positions of up to ~1e3 Å (float32) or ~1e6 Å (float64)
_RECHECK_BAND = {torch.float32: 1e-4, torch.float64: 1e-9}
# vesin refuses cutoffs below 1e-6 Å, and indexes its cells with int32, so atoms too many
# cells away from the origin would overflow it (it caps a cell list at 1e5 cells): such
# rare inputs go to torch-cluster instead
_VESIN_MIN_CUTOFF = 1e-6
_VESIN_MAX_CELLS_AWAY = 1e4
_MIN_MAX_NEIGHBORS = 16  # below this a retry costs more than the memory it saves
_COINCIDENT = 1e-6  # Å; closer pairs are one atom given twice, and would give NaN directions


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
        return _no_edges(positions.device, out_dtype)
    # torch-cluster's kd-tree, the 3x3 solves and the exact cut want single or double precision
    work_dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    if work_dtype != out_dtype:
        positions, cell = positions.to(work_dtype), cell.to(work_dtype)
    if backend == "auto":
        backend = "vesin" if positions.device.type == "cpu" else "torch-cluster"
    with torch.no_grad():
        if backend == "vesin":
            edge_index, shifts = _vesin_edges(positions, cutoff, batch, cell, pbc)
        else:
            edge_index, shifts = _torch_cluster_edges(positions, cutoff, batch, cell, pbc)
    return edge_index, shifts if work_dtype == out_dtype else shifts.to(out_dtype)


def _vesin_edges(positions: Tensor, cutoff: float, batch: Tensor, cell: Tensor, pbc: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`radius_graph` on vesin's cell list, one search per graph (on the CPU)."""
    device, work_dtype = positions.device, positions.dtype
    if device.type != "cpu":
        positions, batch, cell, pbc = positions.cpu(), batch.cpu(), cell.cpu(), pbc.cpu()
    n_graphs, n_atoms = cell.shape[0], positions.shape[0]
    periodic = pbc.numpy()
    # vesin reads the rows of open directions too: give it the completed, invertible basis
    boxes = _lattice_basis(cell.double().numpy(), periodic) if periodic.any() else np.zeros((n_graphs, 3, 3))
    if cutoff <= _VESIN_MIN_CUTOFF or _too_far_for_vesin(positions, boxes, periodic):
        edge_index, shifts = _torch_cluster_edges(positions, cutoff, batch, cell, pbc)
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
        if lengths.min() < _COINCIDENT:
            e = int(np.argmax(lengths < _COINCIDENT))
            centre, source = (start + int(a) for a in pairs[e])
            if order is not None:
                centre, source = int(order[centre]), int(order[source])
            raise _coincident_error(centre, source, cell_shifts[e].tolist())
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
        return _no_edges(device, work_dtype)
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


def _torch_cluster_edges(
    positions: Tensor, cutoff: float, batch: Tensor, cell: Tensor, pbc: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`radius_graph` on torch-cluster over a padded box of periodic images."""
    # torch-cluster needs atoms sorted by graph; `order` maps sorted -> given indices
    order = torch.argsort(batch, stable=True)
    pos, graph = positions[order], batch[order]
    n_graphs = cell.shape[0]

    basis = _lattice_basis(cell.double().cpu().numpy(), pbc.cpu().numpy())
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
    image_atom, image_shift = _padded_images(frac, graph, n_images, pad)
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
    coincident = lengths < _COINCIDENT
    if bool(coincident.any()):
        e = int(torch.nonzero(coincident)[0])
        source, centre = edge_index[:, e].tolist()
        raise _coincident_error(centre, source, shifts[e].tolist())
    return edge_index, shifts


def _coincident_error(centre: int, source: int, shift: list) -> ValueError:
    return ValueError(
        f"atoms {centre} and {source} sit at the same place (closer than {_COINCIDENT} Å, shift {list(shift)})"
    )


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


def edge_vectors(positions: Tensor, edge_index: Tensor, shifts: Tensor, cell: Tensor, batch: Tensor) -> Tensor:
    """[n_edges, 3] vectors ``positions[j] - positions[i] + shifts @ cell[batch[i]]``.

    Differentiable with respect to ``positions`` and ``cell`` (forces and stress).
    """
    source, centre = edge_index[0], edge_index[1]
    lattice_shift = torch.einsum("ek,ekl->el", shifts.to(cell.dtype), cell[batch[centre]])
    return positions[source] - positions[centre] + lattice_shift


def collate(graphs: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Batch single-structure graph dicts into one graph dict.

    Per-atom, per-edge and per-graph fields (:data:`keys.PER_ATOM`, :data:`keys.PER_EDGE`,
    :data:`keys.PER_GRAPH`) are concatenated; ``EDGE_INDEX`` is offset by the running atom
    count; ``BATCH``, ``PTR`` and ``NUM_ATOMS`` are rebuilt. Each input holds one structure,
    so its per-graph fields have a leading dimension of 1 (``CELL`` [1, 3, 3], ``ENERGY`` [1]).

    Raises:
        ValueError: if a field is present in some graphs but not all, a field is unknown,
            a leading dimension does not match, or there is nothing to batch.
    """
    if len(graphs) == 0:
        raise ValueError("collate needs at least one graph")
    all_keys = set().union(*graphs)
    for key in sorted(all_keys):
        missing = [n for n, graph in enumerate(graphs) if key not in graph]
        if missing:
            raise ValueError(f"field {key!r} is present in some graphs but missing from graphs {missing}")
    if keys.POSITIONS not in all_keys:
        raise ValueError(f"collate needs {keys.POSITIONS!r} in every graph")
    rebuilt = {keys.BATCH, keys.PTR, keys.NUM_ATOMS}
    unknown = all_keys - set(keys.PER_ATOM) - set(keys.PER_EDGE) - set(keys.PER_GRAPH) - rebuilt - {keys.EDGE_INDEX}
    if unknown:
        raise ValueError(f"collate does not know whether fields {sorted(unknown)} are per atom, edge or graph")

    device = graphs[0][keys.POSITIONS].device
    num_atoms = torch.tensor([graph[keys.POSITIONS].shape[0] for graph in graphs], dtype=torch.long, device=device)
    ptr = torch.cat([num_atoms.new_zeros(1), torch.cumsum(num_atoms, dim=0)])
    out: dict[str, Tensor] = {}
    for key in sorted(all_keys - rebuilt):
        values = [graph[key] for graph in graphs]
        for n, (graph, value) in enumerate(zip(graphs, values)):
            expected = _leading_dim(key, graph)
            if value.dim() == 0 or value.shape[0] != expected:
                shape = tuple(value.shape)
                raise ValueError(f"field {key!r} of graph {n} has shape {shape}, expected [{expected}, ...]")
        if key == keys.EDGE_INDEX:
            out[key] = torch.cat([value + offset for value, offset in zip(values, ptr[:-1].tolist())], dim=1)
        else:
            out[key] = torch.cat(values, dim=0)
    out[keys.BATCH] = torch.repeat_interleave(torch.arange(len(graphs), device=device), num_atoms)
    out[keys.PTR] = ptr
    out[keys.NUM_ATOMS] = num_atoms
    return out


def _leading_dim(key: str, graph: Mapping[str, Tensor]) -> int:
    """Expected size of the first dimension of ``graph[key]`` (2 for ``EDGE_INDEX``)."""
    if key in keys.PER_ATOM:
        return graph[keys.POSITIONS].shape[0]
    if key in keys.PER_GRAPH:
        return 1
    if key == keys.EDGE_INDEX:
        return 2
    if keys.EDGE_INDEX not in graph:
        return graph[key].shape[0]  # nothing to check per-edge fields against
    return graph[keys.EDGE_INDEX].shape[1]


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


def _lattice_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """[n_graphs, 3, 3] invertible basis: the periodic cell rows, completed by unit vectors
    orthogonal to them (non-periodic rows may be zero or arbitrary, so they are replaced).
    In numpy: on 3x3 matrices its calls cost a fraction of torch's.

    Raises ValueError naming the graph whose periodic vectors span no lattice.
    """
    if pbc.all():
        basis = cell
    else:
        # right singular vectors past the rank span the orthogonal complement of the periodic rows
        _, _, vh = np.linalg.svd(cell * pbc[..., None])
        slot = np.clip(pbc.sum(axis=1, keepdims=True) + np.cumsum(~pbc, axis=1) - 1, 0, 2)
        completion = np.take_along_axis(vh, np.repeat(slot[..., None], 3, axis=-1), axis=1)
        basis = np.where(pbc[..., None], cell, completion)

    lengths = np.where(pbc, np.linalg.norm(cell, axis=-1), 1.0)
    degenerate = pbc.any(axis=1) & (np.abs(np.linalg.det(basis)) <= _DEGENERATE_CELL_TOL * lengths.prod(axis=1))
    if degenerate.any():
        g = int(np.flatnonzero(degenerate)[0])
        raise ValueError(
            f"graph {g}: cell {cell[g].tolist()} is degenerate (zero volume) "
            f"along its periodic directions {pbc[g].tolist()}"
        )
    return basis


def _padded_images(frac: Tensor, graph: Tensor, n_images: Tensor, pad: Tensor) -> tuple[Tensor, Tensor]:
    """Atom index and integer shift of every image whose fractional coordinates lie within
    ``(-pad, 1 + pad)`` along each periodic axis (atoms are wrapped into [0, 1) there).

    Axes are padded one after another, so the work is linear in the number of images kept.
    """
    atom = torch.arange(frac.shape[0], device=frac.device)
    shift = torch.zeros_like(frac)
    for axis in range(3):
        n = n_images[graph[atom], axis]
        copies = 2 * n + 1
        if bool((copies == 1).all()):
            continue
        parent = torch.repeat_interleave(torch.arange(atom.shape[0], device=frac.device), copies)
        first = torch.cumsum(copies, dim=0) - copies
        offset = torch.arange(parent.shape[0], device=frac.device) - first[parent] - n[parent]
        coordinate = frac[atom[parent], axis] + offset
        reach = pad[graph[atom[parent]], axis]
        inside = (coordinate > -reach) & (coordinate < 1 + reach)
        atom, shift = atom[parent[inside]], shift[parent[inside]]
        shift[:, axis] = offset[inside].to(shift.dtype)
    return atom, shift


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


def _no_edges(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    return torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, 3, dtype=dtype, device=device)

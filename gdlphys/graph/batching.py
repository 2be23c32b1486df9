"""Batching: single-structure graph dicts into one graph dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from gdlphys import keys

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

"""Neighbour sums in chunks of edges, and per-atom updates in chunks of atoms, recomputed in
the backward pass: the memory of a force call no longer grows with the edges times the
message width, nor with the atoms times the width of a product basis.

Forces are -dE/dr by autograd, so a plain forward keeps every edge's tensor-product
intermediates and radial-MLP activations for the backward pass (kilobytes per edge, tens
of edges per atom), and every atom's update intermediates (the monomials of a symmetric
product basis: ~100 kB per atom for organic-xtb). Summed chunk by chunk under
``torch.utils.checkpoint`` (non-reentrant), only each chunk's inputs are kept; the backward
pass recomputes one chunk at a time. Same sums, in the same order within a chunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from gdlphys.nn.scatter import scatter_sum

AUTO_MIN_EDGES = 200_000  # edge_chunk=None chunks graphs above this (~4,000 atoms at water density, 5 Å)
AUTO_CHUNK = 8_192  # edges per chunk when automatic: one chunk's intermediates are held at a time


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (another C library)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand the pages of freed blocks back to the system (glibc; elsewhere nothing). Each chunk's
    long-lived autograd nodes land between its freed intermediates, so glibc would keep those
    free pages resident and the resident memory would grow with the edges after all."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _trimmed(grad: Tensor) -> Tensor:
    release_freed_memory()
    return grad


def check_edge_chunk(edge_chunk: int | None) -> int | None:
    """``edge_chunk`` as given, or ValueError: None (automatic), 0 (off) or edges per chunk."""
    if edge_chunk is not None and (isinstance(edge_chunk, bool) or not isinstance(edge_chunk, int) or edge_chunk < 0):
        raise ValueError(f"edge_chunk must be None (automatic), 0 (off) or a positive number of edges, got {edge_chunk!r}")
    return edge_chunk


def chunk_size(edge_chunk: int | None, n_edges: int, training: bool) -> int:
    """Edges per chunk for this call, 0 for one plain pass.

    None chunks only at inference (training batches keep their speed) on graphs above
    AUTO_MIN_EDGES; a number chunks whenever there are more edges than that. Under
    ``torch.compile`` it never chunks (the compiled graph stays one graph).
    """
    if torch.compiler.is_compiling():
        return 0
    if edge_chunk is None:
        return AUTO_CHUNK if not training and n_edges > AUTO_MIN_EDGES else 0
    return edge_chunk if 0 < edge_chunk < n_edges else 0


def rows_per_chunk(edge_chunk: int, n_rows: int, n_edges: int) -> int:
    """Atoms per chunk of a per-atom update when the edges go ``edge_chunk`` at a time (0: one
    pass): the same share of the atoms as the edge chunk's share of the edges."""
    if edge_chunk <= 0 or n_edges <= 0:
        return 0
    return max(1, edge_chunk * n_rows // n_edges)


def _checkpointed(function: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
    part = checkpoint(function, *inputs, use_reentrant=False)
    if part.requires_grad:  # the backward pass recomputes chunk after chunk: trim between them too
        part.register_hook(_trimmed)
    return part


def map_rows(function: Callable[..., Tensor], inputs: tuple[Tensor, ...], chunk: int) -> Tensor:
    """``function(*inputs)`` for a function whose output row i depends on row i of each input
    alone, ``chunk`` rows at a time under activation checkpointing (0: one plain pass)."""
    if chunk <= 0 or inputs[0].shape[0] <= chunk:
        return function(*inputs)
    parts = [_checkpointed(function, *pieces) for pieces in zip(*(t.split(chunk) for t in inputs))]
    return torch.cat(parts)  # cat keeps no input for its backward


def sum_messages(
    messages: Callable[..., Tensor], edge_inputs: tuple[Tensor, ...], centre: Tensor, num_nodes: int, chunk: int
) -> Tensor:
    """[num_nodes, ...] sum over edges e into ``centre[e]`` of ``messages(*edge_inputs)`` rows.

    ``messages`` maps per-edge tensors (rows aligned with ``centre``) to per-edge messages;
    with ``chunk > 0`` it runs on ``chunk`` edges at a time under activation checkpointing.
    """
    if chunk <= 0:
        return scatter_sum(messages(*edge_inputs), centre, num_nodes)
    total = None
    # split: one backward node for all chunks of each input (a slice per chunk would write full-size grads)
    for piece_centre, *pieces in zip(centre.split(chunk), *(t.split(chunk) for t in edge_inputs)):
        part = _checkpointed(messages, *pieces)
        if total is None:
            total = part.new_zeros((num_nodes,) + tuple(part.shape[1:]))
        # index_put_ keeps only the index for its backward (index_add_ would keep every chunk's messages)
        total = total.index_put_((piece_centre,), part, accumulate=True)
        del part
        release_freed_memory()
    return total

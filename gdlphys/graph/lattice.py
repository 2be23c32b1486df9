"""Periodic lattices: an invertible basis for any mix of periodic and open directions,
and the periodic images of atoms within a padded box."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_DEGENERATE_CELL_TOL = 1e-6  # |det| / product of periodic vector lengths below this: no lattice


def lattice_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
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


def padded_images(frac: Tensor, graph: Tensor, n_images: Tensor, pad: Tensor) -> tuple[Tensor, Tensor]:
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

"""Neighbour-list reuse with a skin: rebuild only when some atom has moved more than skin / 2.

Edges are found within ``cutoff + skin``; pairs between ``cutoff`` and ``cutoff + skin``
contribute exactly nothing (the cutoff envelope and its derivatives vanish there, and
the radial networks carry no bias), so reusing the list changes no result while
saving the neighbour search on most MD steps.
"""

from __future__ import annotations

import numpy as np
import torch

from gdlphys import keys
from gdlphys.graph.structure import structure_graph


class NeighbourListCache:
    def __init__(self, cutoff: float, skin: float = 0.0) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self._graph: dict[str, torch.Tensor] | None = None
        self._reference: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.builds = 0  # how many searches were run (for benchmarks and tests)

    def _reusable(self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        if self.skin == 0.0 or self._reference is None:
            return False
        ref_numbers, ref_positions, ref_cell, ref_pbc = self._reference
        if ref_numbers.shape != numbers.shape or not (
            np.array_equal(ref_numbers, numbers) and np.array_equal(ref_cell, cell) and np.array_equal(ref_pbc, pbc)
        ):
            return False
        displacement = np.sqrt(np.max(np.sum((positions - ref_positions) ** 2, axis=1))) if len(positions) else 0.0
        return bool(displacement < 0.5 * self.skin)

    def graph(
        self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
        dtype: torch.dtype, device: torch.device,
    ) -> dict[str, torch.Tensor]:
        """Graph dict for this structure: the cached edges with new positions, or a fresh search."""
        if self._reusable(numbers, positions, cell, pbc) and self._graph is not None:
            graph = dict(self._graph)
            graph[keys.POSITIONS] = torch.as_tensor(positions, dtype=dtype, device=device)
            return graph
        graph = structure_graph(numbers, positions, cell, pbc, cutoff=self.cutoff + self.skin, dtype=dtype, device=device)
        self.builds += 1
        if self.skin > 0.0:
            self._graph = graph
            self._reference = (numbers.copy(), positions.copy(), cell.copy(), pbc.copy())
        return graph

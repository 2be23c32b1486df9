"""An analytic pair potential that runs through gdlphys's own pipeline (graph, autograd, calculator).

Replacing a potential's learnt energy model by Lennard-Jones lets the tests compare
energies, per-atom energies, forces and stress with ASE's own LennardJones calculator:
an oracle for the neighbour list, periodic shifts, the strain route to the stress
and the calculator glue, independent of any learnt weights.
"""

from __future__ import annotations

import torch
from torch import nn

from gdlphys import keys
from gdlphys.graph import edge_vectors
from gdlphys.nn.scatter import scatter_sum


class LennardJonesEnergy(nn.Module):
    """E = sum_i 1/2 sum_j 4 eps [(s/r)^12 - (s/r)^6 - (s/rc)^12 + (s/rc)^6] (ASE's shifted, unsmoothed form)."""

    def __init__(self, sigma: float, epsilon: float, cutoff: float) -> None:
        super().__init__()
        self.sigma, self.epsilon, self.cutoff = sigma, epsilon, cutoff
        self.register_buffer("dtype_probe", torch.zeros(1))  # lets .to(dtype) be observed

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        vectors = edge_vectors(
            data[keys.POSITIONS], data[keys.EDGE_INDEX], data[keys.EDGE_SHIFTS], data[keys.CELL], data[keys.BATCH]
        )
        r = torch.linalg.vector_norm(vectors, dim=-1)
        s6 = (self.sigma / r) ** 6
        c6 = (self.sigma / self.cutoff) ** 6
        pair = 4.0 * self.epsilon * (s6 * s6 - s6 - (c6 * c6 - c6))
        data[keys.ATOMIC_ENERGIES] = 0.5 * scatter_sum(pair, data[keys.EDGE_INDEX][1], data[keys.POSITIONS].shape[0])
        return data

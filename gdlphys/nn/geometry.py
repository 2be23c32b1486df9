"""Edge geometry: vectors, lengths, spherical harmonics and radial embedding."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from gdlphys import keys
from gdlphys.graph import edge_vectors
from gdlphys.nn.radial import BesselBasis, PolynomialCutoff


class EdgeGeometry(nn.Module):
    """Writes EDGE_VECTORS, EDGE_LENGTHS, EDGE_SH (Y_l, l <= l_max) and EDGE_RADIAL.

    Only relative vectors r_ij enter the model, so the energy is translation invariant
    by construction; the spherical harmonics carry the rotation/reflection behaviour.
    """

    def __init__(self, cutoff: float, l_max: int, num_basis: int = 8, cutoff_p: int = 6) -> None:
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(l_max)
        self.irreps_out = {keys.EDGE_SH: self.irreps_sh, keys.EDGE_RADIAL: o3.Irreps(f"{num_basis}x0e")}
        # normalize=True: Y depends on direction only; "component": each component has unit mean square.
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.basis = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        vectors = edge_vectors(
            data[keys.POSITIONS], data[keys.EDGE_INDEX], data[keys.EDGE_SHIFTS], data[keys.CELL], data[keys.BATCH]
        )
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        data[keys.EDGE_VECTORS] = vectors
        data[keys.EDGE_LENGTHS] = lengths
        data[keys.EDGE_SH] = self.sh(vectors)
        data[keys.EDGE_RADIAL] = self.basis(lengths) * self.envelope(lengths).unsqueeze(-1)
        return data

"""Readouts: per-atom energies from scalar features, per-species scale and reference energy; the dipole."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from gdlphys import keys
from gdlphys.nn.scatter import scatter_sum
from gdlphys.nn.species import SpeciesDependent, grow_rows, row_masks


class ScalarReadout(nn.Module):
    """NODE_FEATURES -> ATOMIC_ENERGIES (dimensionless, before scale/shift) through the 0e channels."""

    def __init__(self, irreps_in: o3.Irreps, hidden: int = 16) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if o3.Irrep("0e") not in {ir for _, ir in self.irreps_in}:
            raise ValueError(f"readout needs scalar (0e) features, got {self.irreps_in}")
        self.irreps_out = o3.Irreps("1x0e")
        self.linear_1 = o3.Linear(self.irreps_in, o3.Irreps(f"{hidden}x0e"))
        self.linear_2 = o3.Linear(o3.Irreps(f"{hidden}x0e"), self.irreps_out)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = nn.functional.silu(self.linear_1(data[keys.NODE_FEATURES]))
        data[keys.ATOMIC_ENERGIES] = self.linear_2(hidden).squeeze(-1)
        return data


class SpeciesScaleShift(SpeciesDependent):
    """E_i = scale[s_i] * e_i + E0[s_i].

    E0 are the reference energies fitted by least squares on the training set (fixed
    buffer, so fine-tuning can refit them); ``scale`` starts at the force RMS so that the
    network works with numbers of order one. (A learnt per-species shift would be inert:
    the energy model anchors lone atoms to E0, which cancels any per-species constant.)
    """

    def __init__(self, reference_energies: torch.Tensor, scale: float = 1.0) -> None:
        super().__init__()
        n = reference_energies.shape[0]
        self.register_buffer("reference_energies", reference_energies.clone().to(torch.get_default_dtype()))
        self.scale = nn.Parameter(torch.full((n,), float(scale)))

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        s = data[keys.SPECIES]
        e = data[keys.ATOMIC_ENERGIES]
        data[keys.ATOMIC_ENERGIES] = self.scale[s] * e + self.reference_energies[s]
        return data

    def grown_state(self, grown: SpeciesScaleShift, n_old: int, mix: torch.Tensor) -> dict[str, torch.Tensor]:
        reference = grow_rows(self.reference_energies.double(), mix.double())  # E0 in float64 whatever the dtype
        return {"scale": grow_rows(self.scale, mix), "reference_energies": reference.to(self.reference_energies)}

    def species_masks(self, species) -> dict[str, torch.Tensor]:
        return {"scale": row_masks(self.scale, species)}


class DipoleReadout(nn.Module):
    """NODE_FEATURES -> ATOMIC_CHARGES (e) and atomic dipoles -> DIPOLE (e*Å) of each graph.

    mu = sum_i q_i (r_i - c) + sum_i p_i, where q_i is a scalar (0e) output made neutral per
    graph (q_i minus the graph's mean, so sum_i q_i = 0 and mu does not depend on the origin c),
    and p_i an l=1 vector (1o) output of the node features. Both are linear maps of equivariant
    features, so mu rotates with the structure and changes sign under inversion, as a dipole must.
    Meaningful for molecules; for periodic structures the dipole of one cell is not defined.
    """

    def __init__(self, irreps_in: o3.Irreps, hidden: int = 16) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if o3.Irrep("1o") not in {ir for _, ir in self.irreps_in}:
            raise ValueError(f"the dipole head needs vector (1o) features (l_max >= 1), got {self.irreps_in}")
        self.irreps_out = o3.Irreps("1x0e + 1x1o")
        self.charge_hidden = o3.Linear(self.irreps_in, o3.Irreps(f"{hidden}x0e"))
        self.charge_out = o3.Linear(o3.Irreps(f"{hidden}x0e"), o3.Irreps("1x0e"))
        self.atomic_dipole = o3.Linear(self.irreps_in, o3.Irreps("1x1o"))

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = data[keys.NODE_FEATURES]
        batch = data[keys.BATCH]
        n_graphs = data[keys.CELL].shape[0]
        raw = self.charge_out(nn.functional.silu(self.charge_hidden(features))).squeeze(-1)
        count = scatter_sum(torch.ones_like(raw), batch, n_graphs)
        charges = raw - (scatter_sum(raw, batch, n_graphs) / count.clamp_min(1))[batch]
        positions = data[keys.POSITIONS]
        p = self.atomic_dipole(features)  # 1o components in e3nn's (x, y, z) order, as D(R) = R there
        data[keys.ATOMIC_CHARGES] = charges
        data[keys.DIPOLE] = scatter_sum(charges.unsqueeze(-1) * positions + p, batch, n_graphs)
        return data

"""Invariant readout: per-atom energies from scalar features, per-species scale and reference energy."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from gdlphys import keys


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


class SpeciesScaleShift(nn.Module):
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

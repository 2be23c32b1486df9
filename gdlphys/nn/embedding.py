"""Species embedding: element -> one-hot attributes -> learnt scalar features."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from gdlphys import keys
from gdlphys.nn.species import SpeciesDependent, grow_linear, linear_masks


class SpeciesEmbedding(SpeciesDependent):
    """Writes NODE_ATTRS (one-hot species, n_species x 0e) and initial NODE_FEATURES (num_features x 0e)."""

    def __init__(self, num_species: int, num_features: int) -> None:
        super().__init__()
        self.num_species = int(num_species)
        self.irreps_attrs = o3.Irreps(f"{num_species}x0e")
        self.irreps_out = o3.Irreps(f"{num_features}x0e")
        self.linear = o3.Linear(self.irreps_attrs, self.irreps_out)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        species = data[keys.SPECIES]
        attrs = nn.functional.one_hot(species, self.num_species).to(data[keys.POSITIONS].dtype)
        data[keys.NODE_ATTRS] = attrs
        data[keys.NODE_FEATURES] = self.linear(attrs)
        return data

    def grown_state(self, grown: SpeciesEmbedding, n_old: int, mix: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"linear.weight": grow_linear(self.linear, grown.linear, n_old, mix)}

    def species_masks(self, species) -> dict[str, torch.Tensor]:
        return {"linear.weight": linear_masks(self.linear, species)}

"""The energy model: graph modules that end in per-atom energies, anchored so that an
atom without neighbours has exactly its species' reference energy E0."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from gdlphys import keys


class EnergyModel(nn.Sequential):
    """Runs its named graph modules in order; the last one, ``scale_shift``, writes
    ATOMIC_ENERGIES and holds ``reference_energies`` (E0, one per species).

    An atom with no edge sees no geometry, so the network's energy for it is a constant of
    its species. That constant is replaced by E0: E_i = net_i - (net_isolated[s_i] - E0[s_i]).
    A single atom, or atoms beyond the cutoff of all others, then get exactly the sum of
    the reference energies and zero forces. ``net_isolated`` comes from one extra atom per
    species, without edges, appended to the same forward pass: no second pass, no cache,
    and gradients flow through it while training.
    """

    def __init__(self, num_species: int, layers: OrderedDict[str, nn.Module]) -> None:
        super().__init__(layers)
        self.num_species = int(num_species)

    @property
    def reference_energies(self) -> torch.Tensor:
        return self.scale_shift.reference_energies

    def network_forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The modules alone, without the isolated-atom anchoring."""
        for module in self:
            data = module(data)
        return data

    def _with_isolated_atoms(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``data`` plus one atom of each species that no edge touches (so no geometry reaches it)."""
        positions = data[keys.POSITIONS]
        n = self.num_species
        extra = dict(data)
        extra[keys.POSITIONS] = torch.cat([positions, positions.new_zeros(n, 3)])
        extra[keys.SPECIES] = torch.cat([data[keys.SPECIES], torch.arange(n, device=positions.device)])
        extra[keys.BATCH] = torch.cat([data[keys.BATCH], data[keys.BATCH].new_zeros(n)])
        return extra

    def network_isolated_energies(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """[n_species] the modules' energy of one atom of each species with no neighbour (eV)."""
        n = self.num_species
        graph = {
            keys.POSITIONS: torch.zeros(n, 3, dtype=dtype, device=device),
            keys.SPECIES: torch.arange(n, device=device),
            keys.CELL: torch.zeros(n, 3, 3, dtype=dtype, device=device),
            keys.PBC: torch.zeros(n, 3, dtype=torch.bool, device=device),
            keys.BATCH: torch.arange(n, device=device),
            keys.EDGE_INDEX: torch.zeros(2, 0, dtype=torch.long, device=device),
            keys.EDGE_SHIFTS: torch.zeros(0, 3, dtype=dtype, device=device),
        }
        return self.network_forward(graph)[keys.ATOMIC_ENERGIES]

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n_atoms = data[keys.POSITIONS].shape[0]
        out = self.network_forward(self._with_isolated_atoms(data))
        energies = out[keys.ATOMIC_ENERGIES]
        offsets = energies[n_atoms:] - self.reference_energies.to(energies.dtype)
        data = dict(data)
        for key in (keys.EDGE_VECTORS, keys.EDGE_LENGTHS, keys.EDGE_SH, keys.EDGE_RADIAL):
            if key in out:
                data[key] = out[key]
        for key in (keys.NODE_ATTRS, keys.NODE_FEATURES):
            data[key] = out[key][:n_atoms]
        data[keys.ATOMIC_ENERGIES] = energies[:n_atoms] - offsets[data[keys.SPECIES]]
        return data

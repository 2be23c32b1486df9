"""The energy model: graph modules that end in per-atom energies, anchored so that an
atom without neighbours has exactly its species' reference energy E0."""

from __future__ import annotations

import torch
from torch import nn

from gdlphys import keys


class EnergyModel(nn.Sequential):
    """Runs its graph modules in order; the last one writes ATOMIC_ENERGIES and holds
    ``reference_energies`` (E0, one per species).

    An atom with no edge sees no geometry, so the network's energy for it is a constant of
    its species. That constant is replaced by E0: E_i = net_i - (net_isolated[s_i] - E0[s_i]).
    A single atom, or atoms beyond the cutoff of all others, then get exactly the sum of
    the reference energies and zero forces. The per-species correction is recomputed on
    every call while any parameter can learn (gradients flow through it) and cached
    otherwise (inference), keyed on the address and version counter of every tensor (so any
    in-place change through torch, a ``load_state_dict`` or a ``.to()`` invalidates it).
    """

    def __init__(self, num_species: int, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self.num_species = int(num_species)
        # (key, offsets, storages): holding the storages keeps their addresses from being reused
        self._isolated_cache: tuple[tuple, torch.Tensor, list] | None = None

    @property
    def reference_energies(self) -> torch.Tensor:
        return self[-1].reference_energies

    def network_forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The modules alone, without the isolated-atom anchoring."""
        for module in self:
            data = module(data)
        return data

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

    def _state_key(self, dtype: torch.dtype, device: torch.device) -> tuple | None:
        """Identity of every weight, or None when the correction must be recomputed (learnable weights)."""
        tensors = [*self.parameters(), *self.buffers()]
        if any(t.requires_grad for t in tensors):
            return None
        try:
            return (dtype, device, tuple((t.data_ptr(), t._version) for t in tensors))
        except RuntimeError:  # tensors made under inference_mode carry no version counter
            return None

    def isolated_offsets(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """[n_species] net_isolated - E0: what the network adds to E0 for an atom with no neighbour."""
        key = self._state_key(dtype, device)
        if key is not None and self._isolated_cache is not None and self._isolated_cache[0] == key:
            return self._isolated_cache[1]
        offsets = self.network_isolated_energies(dtype, device) - self.reference_energies.to(dtype)
        self._isolated_cache = None
        if key is not None:
            storages = [t.untyped_storage() for t in (*self.parameters(), *self.buffers())]
            self._isolated_cache = (key, offsets.detach(), storages)
        return offsets

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        positions = data[keys.POSITIONS]
        offsets = self.isolated_offsets(positions.dtype, positions.device)
        data = self.network_forward(data)
        data[keys.ATOMIC_ENERGIES] = data[keys.ATOMIC_ENERGIES] - offsets[data[keys.SPECIES]]
        return data

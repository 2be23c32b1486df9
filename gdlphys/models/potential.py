"""A whole potential: species handling, the energy model, and forces/stress by autograd."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from ase.data import chemical_symbols
from torch import nn

from gdlphys import keys
from gdlphys.models.config import ModelConfig
from gdlphys.models.builder import build_energy_model
from gdlphys.nn.edge_chunks import check_edge_chunk
from gdlphys.nn.interaction import Interaction
from gdlphys.nn.readout import DipoleReadout
from gdlphys.nn.scatter import scatter_sum


class UnknownElementError(ValueError):
    """A structure holds an element that the potential was not trained on."""


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


class Potential(nn.Module):
    """E(3)-invariant energy model with conservative forces and stress.

    ``forward`` takes a graph dict (positions, atomic numbers, cell, pbc, batch and a
    neighbour list) and returns ENERGY [n_graphs] and ATOMIC_ENERGIES, plus
    FORCES = -dE/dr and STRESS = (1/V) dE/d(strain) when asked. There is no force head:
    forces are the exact gradient of the one energy, so MD conserves it. An atom with no
    neighbour within the cutoff has exactly its element's reference energy and zero force.
    With ``config.dipole`` it also returns DIPOLE [n_graphs, 3] (e*Å) and ATOMIC_CHARGES.

    The parts have names (``model.embedding``, ``model.interaction_0``, ..., ``model.readout``,
    ``model.scale_shift``, ``dipole_head``). ``source`` (the file it was loaded from) and
    ``metadata`` (the provenance its file records: training data hash, fit options, ...) are
    plain fields, empty until a file fills them.

    ``edge_chunk`` is a run-time setting of every interaction block, not part of the file:
    None (default) sums the neighbour messages in chunks of edges, recomputed in the backward
    pass, at inference on graphs of more than ``gdlphys.nn.edge_chunks.AUTO_MIN_EDGES`` edges;
    0 never chunks; a number chunks that many edges at a time whenever there are more. It
    bounds the memory of a force call on a large structure; results do not depend on it.
    """

    source: str | None
    metadata: dict[str, Any]

    def __init__(
        self,
        config: ModelConfig,
        species: Sequence[int],
        reference_energies: Sequence[float] | torch.Tensor,
        avg_num_neighbors: float,
        scale: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        species = [int(z) for z in species]
        if not species or len(set(species)) != len(species) or min(species) < 1 or max(species) > 118:
            raise ValueError(f"species must be distinct atomic numbers in 1..118, got {species}")
        self.config = config
        self.species = tuple(species)
        self.avg_num_neighbors = float(avg_num_neighbors)
        reference = torch.as_tensor(reference_energies, dtype=torch.float64)
        if reference.shape != (len(species),):
            raise ValueError(f"need one reference energy per species ({len(species)}), got shape {tuple(reference.shape)}")
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_lookup", lookup, persistent=False)
        self.model = build_energy_model(config, len(species), avg_num_neighbors, reference.float(), scale)
        # reads the last layer's features, as the energy readout does
        self.dipole_head = DipoleReadout(self.model.readout.irreps_in, config.readout_hidden) if config.dipole else None
        self.source = None
        self.metadata = {}
        self.to(dtype)
        with torch.no_grad():  # E0 from its float64 values, not through float32
            self.reference_energies.copy_(reference)

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def edge_chunk(self) -> int | None:
        return next((m.edge_chunk for m in self.modules() if isinstance(m, Interaction)), None)

    @edge_chunk.setter
    def edge_chunk(self, value: int | None) -> None:
        check_edge_chunk(value)
        for module in self.modules():
            if isinstance(module, Interaction):
                module.edge_chunk = value

    @property
    def dtype(self) -> torch.dtype:
        return next(t.dtype for t in self.state_dict().values() if t.is_floating_point())

    @property
    def reference_energies(self) -> torch.Tensor:
        return self.model.reference_energies

    def summed_reference_energies(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[n_graphs] sum of the atoms' reference energies E0 of each structure (float64, eV)."""
        atom_e0 = self.reference_energies.double()[self.species_index(batch[keys.ATOMIC_NUMBERS])]
        n_graphs = batch[keys.CELL].shape[0]
        return scatter_sum(atom_e0, batch[keys.BATCH], n_graphs)

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers to species indices; raise naming any element the potential lacks."""
        in_range = (numbers >= 1) & (numbers <= 118)
        index = self.species_lookup[numbers.clamp(0, 118)]
        bad = (~in_range) | (index < 0)
        if bool(bad.any()):
            unknown = sorted({int(z) for z in numbers[bad].tolist()})
            names = ", ".join(_symbol(z) for z in unknown)
            known = ", ".join(_symbol(z) for z in self.species)
            raise UnknownElementError(f"element(s) {names} not supported by this potential (it knows {known})")
        return index

    def forward(
        self,
        data: dict[str, torch.Tensor],
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        data = dict(data)  # the caller's dict is left as it was
        data[keys.SPECIES] = self.species_index(data[keys.ATOMIC_NUMBERS])
        positions = data[keys.POSITIONS]
        batch = data[keys.BATCH]
        n_graphs = data[keys.CELL].shape[0]
        inputs: list[torch.Tensor] = []
        if compute_forces or compute_stress:
            if not positions.requires_grad:
                positions = positions.detach().requires_grad_(True)
            inputs.append(positions)
        if compute_stress:
            # Differentiate w.r.t. a symmetric strain applied to positions and cell (virial route).
            strain = torch.zeros((n_graphs, 3, 3), dtype=positions.dtype, device=positions.device, requires_grad=True)
            symmetric = 0.5 * (strain + strain.transpose(-1, -2))
            inputs.append(strain)
            data[keys.POSITIONS] = positions + torch.einsum("ni,nij->nj", positions, symmetric[batch])
            data[keys.CELL] = data[keys.CELL] + torch.bmm(data[keys.CELL], symmetric)
        else:
            data[keys.POSITIONS] = positions

        data = self.model(data)
        energy = scatter_sum(data[keys.ATOMIC_ENERGIES], batch, n_graphs)
        out = {keys.ENERGY: energy, keys.ATOMIC_ENERGIES: data[keys.ATOMIC_ENERGIES]}
        if self.dipole_head is not None:
            data = self.dipole_head(data)
            out[keys.DIPOLE], out[keys.ATOMIC_CHARGES] = data[keys.DIPOLE], data[keys.ATOMIC_CHARGES]
        if inputs:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph or self.training, allow_unused=True
            )
            grad_pos = grads[0] if grads[0] is not None else torch.zeros_like(positions)
            if compute_forces:
                out[keys.FORCES] = -grad_pos
            if compute_stress:
                grad_strain = grads[1] if grads[1] is not None else torch.zeros_like(inputs[1])
                volume = torch.linalg.det(data[keys.CELL]).abs()
                out[keys.VIRIAL] = -grad_strain
                out[keys.STRESS] = grad_strain / volume.clamp_min(1e-12).view(-1, 1, 1)
        return out

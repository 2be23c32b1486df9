"""Builder of the energy model: embedding -> edges -> interactions (NequIP- or MACE-style) -> readout."""

from __future__ import annotations

from collections import OrderedDict

import torch
from e3nn import o3
from torch import nn

from gdlphys.models.config import ModelConfig
from gdlphys.models.energy_model import EnergyModel
from gdlphys.nn import (
    EdgeGeometry,
    Interaction,
    ProductInteraction,
    ScalarReadout,
    SpeciesEmbedding,
    SpeciesScaleShift,
)


def hidden_irreps(config: ModelConfig) -> o3.Irreps:
    """num_features copies of every l <= l_max: the natural parity (-1)^l, or both parities."""
    parities = (1, -1) if config.parity else (None,)
    irreps = []
    for l in range(config.l_max + 1):
        for p in parities:
            irreps.append((config.num_features, (l, (-1) ** l if p is None else p)))
    return o3.Irreps(irreps)


def build_energy_model(
    config: ModelConfig, num_species: int, avg_num_neighbors: float, reference_energies: torch.Tensor, scale: float
) -> EnergyModel:
    """Modules that map a graph dict with SPECIES and edges to ATOMIC_ENERGIES (eV), named
    ``embedding``, ``geometry``, ``interaction_0`` ... ``interaction_{L-1}``, ``readout``, ``scale_shift``."""
    embedding = SpeciesEmbedding(num_species, config.num_features)
    geometry = EdgeGeometry(config.cutoff, config.l_max, config.num_basis, config.cutoff_p)
    layers: OrderedDict[str, nn.Module] = OrderedDict(embedding=embedding, geometry=geometry)
    irreps = embedding.irreps_out
    target = hidden_irreps(config)
    options = {"correlation": config.correlation} if config.interaction == "mace" else {}
    block_type = ProductInteraction if config.interaction == "mace" else Interaction
    for index in range(config.num_layers):
        block = block_type(
            irreps,
            geometry.irreps_sh,
            target,
            num_species,
            config.num_basis,
            avg_num_neighbors,
            config.radial_hidden,
            config.radial_layers,
            config.neighbor_norm,
            **options,
        )
        layers[f"interaction_{index}"] = block
        irreps = block.irreps_out
    layers["readout"] = ScalarReadout(irreps, config.readout_hidden)
    layers["scale_shift"] = SpeciesScaleShift(reference_energies, scale)
    return EnergyModel(num_species, layers)

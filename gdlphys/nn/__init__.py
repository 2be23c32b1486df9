"""Equivariant building blocks on e3nn, one physical concept per module.

Every block reads and writes named fields of the graph dict (``gdlphys.keys``)
and exposes ``irreps_in`` / ``irreps_out`` so the generic checks in
``gdlphys.testing`` can feed it random inputs.
"""

from gdlphys.nn.embedding import SpeciesEmbedding
from gdlphys.nn.geometry import EdgeGeometry
from gdlphys.nn.interaction import Interaction
from gdlphys.nn.product_basis import ProductInteraction, SymmetricProduct
from gdlphys.nn.radial import BesselBasis, PolynomialCutoff
from gdlphys.nn.readout import DipoleReadout, ScalarReadout, SpeciesScaleShift
from gdlphys.nn.scatter import scatter_sum

__all__ = [
    "BesselBasis",
    "DipoleReadout",
    "EdgeGeometry",
    "Interaction",
    "PolynomialCutoff",
    "ProductInteraction",
    "ScalarReadout",
    "SpeciesEmbedding",
    "SpeciesScaleShift",
    "SymmetricProduct",
    "scatter_sum",
]

"""The grouped edge tensor product (gdlphys.nn.tensor_product) is e3nn's, value and gradients, for
every convolution ``Interaction`` builds; a shipped potential gives the same forces with either."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3

from gdlphys.calculator import GDLCalculator
from gdlphys.models.files import load_potential
from gdlphys.nn import Interaction
from gdlphys.nn.interaction import _convolution_irreps
from gdlphys.nn.tensor_product import EdgeTensorProduct
from structures import random_molecule

CASES = [  # (node irreps, harmonics, target irreps)
    ("8x0e", "1x0e+1x1o+1x2e", "8x0e+8x1o+8x2e"),  # a first layer: scalars in
    ("8x0e+8x1o+8x2e", "1x0e+1x1o+1x2e", "8x0e+8x1o+8x2e"),  # organic-xtb's second layer, smaller
    ("4x0e+3x0o+5x1o+2x1e+6x2e", "1x0e+1x1o+1x2e+1x3o", "4x0e+4x0o+4x1o+4x1e+4x2e+4x2o+4x3o"),  # odd parity, l = 3
    ("16x0e+16x1o", "1x0e+1x1o", "16x0e+16x1o"),  # l_max 1
]


def _pair(irreps_in: str, irreps_sh: str, irreps_target: str) -> tuple[o3.TensorProduct, EdgeTensorProduct]:
    """Both built in float64: each rounds its coefficients to the default dtype when built."""
    mid, instructions = _convolution_irreps(o3.Irreps(irreps_in), o3.Irreps(irreps_sh), o3.Irreps(irreps_target))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        tp = o3.TensorProduct(irreps_in, irreps_sh, mid, instructions, shared_weights=False, internal_weights=False)
        return tp, EdgeTensorProduct(tp)
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case[0])
def test_values_and_gradients_are_e3nns(case):
    tp, grouped = _pair(*case)
    generator = torch.Generator().manual_seed(3)
    n = 37
    x1 = torch.randn(n, tp.irreps_in1.dim, dtype=torch.float64, generator=generator, requires_grad=True)
    vectors = torch.randn(n, 3, dtype=torch.float64, generator=generator)
    x2 = o3.spherical_harmonics(tp.irreps_in2, vectors, True, "component").requires_grad_()
    weight = torch.randn(n, tp.weight_numel, dtype=torch.float64, generator=generator, requires_grad=True)
    expected, got = tp(x1, x2, weight), grouped(x1, x2, weight)
    assert got.shape == expected.shape == (n, tp.irreps_out.dim)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    probe = torch.randn(expected.shape, dtype=torch.float64, generator=generator)
    for g_expected, g_got in zip(torch.autograd.grad(expected, (x1, x2, weight), probe),
                                 torch.autograd.grad(got, (x1, x2, weight), probe)):
        torch.testing.assert_close(g_got, g_expected, rtol=1e-12, atol=1e-12)
    assert grouped(x1[:0], x2[:0], weight[:0]).shape == (0, tp.irreps_out.dim)  # no edges: an atom alone


def test_interaction_uses_it_and_saves_nothing_of_it():
    layer = Interaction(o3.Irreps("8x0e+8x1o"), o3.Irreps("1x0e+1x1o+1x2e"), o3.Irreps("8x0e+8x1o+8x2e"),
                        num_species=3, num_basis=6, avg_num_neighbors=5.0)
    assert isinstance(layer.edge_product, EdgeTensorProduct)
    assert not any(key.startswith("edge_product") for key in layer.state_dict()), "derived constants only"


def test_products_it_does_not_compute_are_refused():
    shared = o3.TensorProduct("4x0e", "1x1o", "4x1o", [(0, 0, 0, "uvu", True)], shared_weights=True, internal_weights=True)
    full = o3.FullyConnectedTensorProduct("4x0e+4x1o", "2x0e", "4x0e+4x1o")
    for tp in (shared, full):
        assert not EdgeTensorProduct.supports(tp)
        with pytest.raises(ValueError, match="does not compute"):
            EdgeTensorProduct(tp)


def test_shipped_potential_forces_do_not_change():
    """organic-xtb (trained with e3nn's product) gives the same forces through the grouped one (in
    float64; e3nn's coefficients were rounded to float32 when the float32 potential was built)."""
    potential = load_potential("organic-xtb").double()
    atoms = random_molecule(14, seed=5, species=[1, 6, 7, 8, 9, 16, 17])
    layers = [m for m in potential.modules() if isinstance(m, Interaction)]
    assert layers and all(isinstance(m.edge_product, EdgeTensorProduct) for m in layers)
    grouped = GDLCalculator(potential)
    e_grouped, f_grouped = grouped.get_potential_energy(atoms), grouped.get_forces(atoms)
    for m in layers:
        m.edge_product = None  # back to e3nn's own forward
    plain = GDLCalculator(potential)
    assert plain.get_potential_energy(atoms) == pytest.approx(e_grouped, rel=1e-8)
    f_plain = plain.get_forces(atoms)
    np.testing.assert_allclose(f_plain, f_grouped, rtol=0, atol=1e-7 * np.abs(f_plain).max())

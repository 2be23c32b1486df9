"""Every building block under rotations and reflections (float32 and float64), and the radial pieces."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from gdlphys import keys
from gdlphys.models.builder import hidden_irreps
from gdlphys.nn import BesselBasis, EdgeGeometry, Interaction, PolynomialCutoff, ScalarReadout, SpeciesEmbedding
from gdlphys.testing import O3Element, assert_layer_equivariant
from structures import SPECIES, batch_of, random_crystal, random_molecule, tiny_config

ATOL = {torch.float32: 2e-4, torch.float64: 1e-9}


def _graph(dtype):
    cutoff = tiny_config().cutoff
    data = batch_of([random_molecule(6, seed=0), random_crystal(3, seed=1)], cutoff, dtype)
    lookup = {z: k for k, z in enumerate(SPECIES)}
    data[keys.SPECIES] = torch.tensor([lookup[int(z)] for z in data[keys.ATOMIC_NUMBERS]])
    return data


def _prepared(dtype, l_max=2):
    torch.manual_seed(0)
    data = _graph(dtype)
    embedding = SpeciesEmbedding(len(SPECIES), 8).to(dtype)
    geometry = EdgeGeometry(3.5, l_max, num_basis=6).to(dtype)
    return geometry(embedding(data)), embedding, geometry


@pytest.mark.parametrize("reflect", [False, True])
def test_edge_geometry(dtype, reflect):
    data, _, geometry = _prepared(dtype)
    g = O3Element.random(reflect, torch.Generator().manual_seed(7))
    assert_layer_equivariant(
        geometry, data, {}, {keys.EDGE_SH: geometry.irreps_sh, keys.EDGE_RADIAL: o3.Irreps("6x0e")}, g, ATOL[dtype]
    )


@pytest.mark.parametrize("reflect", [False, True])
def test_embedding_is_invariant(dtype, reflect):
    data, embedding, _ = _prepared(dtype)
    g = O3Element.random(reflect, torch.Generator().manual_seed(7))
    assert_layer_equivariant(embedding, data, {}, {keys.NODE_FEATURES: embedding.irreps_out}, g, ATOL[dtype])


@pytest.mark.parametrize("parity", [False, True])
@pytest.mark.parametrize("reflect", [False, True])
def test_interaction_blocks(dtype, parity, reflect):
    data, embedding, geometry = _prepared(dtype)
    torch.manual_seed(1)
    target = hidden_irreps(tiny_config(parity=parity))
    first = Interaction(embedding.irreps_out, geometry.irreps_sh, target, len(SPECIES), 6, 10.0, 16).to(dtype)
    second = Interaction(first.irreps_out, geometry.irreps_sh, target, len(SPECIES), 6, 10.0, 16, neighbor_norm="mean").to(dtype)
    assert second.residual == (not parity)  # with both parities layer 2 reaches irreps layer 1 cannot
    g = O3Element.random(reflect, torch.Generator().manual_seed(7))

    def layer(d):
        return second(first(d))

    sh = {keys.EDGE_SH: geometry.irreps_sh}
    assert_layer_equivariant(layer, data, sh, {keys.NODE_FEATURES: second.irreps_out}, g, ATOL[dtype])
    # and on features that are already non-scalar
    data = first(dict(data))
    assert_layer_equivariant(second, data, {**sh, keys.NODE_FEATURES: first.irreps_out}, {keys.NODE_FEATURES: second.irreps_out}, g, ATOL[dtype])


def test_readout_is_invariant(dtype):
    data, embedding, geometry = _prepared(dtype)
    block = Interaction(embedding.irreps_out, geometry.irreps_sh, hidden_irreps(tiny_config()), len(SPECIES), 6, 10.0, 16).to(dtype)
    readout = ScalarReadout(block.irreps_out, 8).to(dtype)
    data = block(data)
    g = O3Element.random(True, torch.Generator().manual_seed(7))
    rotated = dict(data)
    rotated[keys.NODE_FEATURES] = data[keys.NODE_FEATURES] @ g.D(block.irreps_out, dtype).T
    a = readout(dict(data))[keys.ATOMIC_ENERGIES]
    b = readout(rotated)[keys.ATOMIC_ENERGIES]
    assert (a - b).abs().max() <= ATOL[dtype]


def test_interaction_is_permutation_equivariant():
    data, embedding, geometry = _prepared(torch.float64)
    block = Interaction(embedding.irreps_out, geometry.irreps_sh, hidden_irreps(tiny_config()), len(SPECIES), 6, 10.0, 16).double()
    n = data[keys.NODE_FEATURES].shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = dict(data)
    for key in (keys.NODE_FEATURES, keys.NODE_ATTRS, keys.SPECIES):
        permuted[key] = data[key][perm]
    permuted[keys.EDGE_INDEX] = inverse[data[keys.EDGE_INDEX]]
    a = block(dict(data))[keys.NODE_FEATURES][perm]
    b = block(permuted)[keys.NODE_FEATURES]
    assert torch.allclose(a, b, atol=1e-12)


def test_polynomial_cutoff_is_smooth():
    envelope = PolynomialCutoff(4.0, p=6)
    r = torch.tensor([0.0, 3.999999, 4.0, 4.5], dtype=torch.float64, requires_grad=True)
    f = envelope(r)
    (grad,) = torch.autograd.grad(f.sum(), r, create_graph=True)
    assert f[0].item() == pytest.approx(1.0)
    assert abs(f[1].item()) < 1e-10 and f[2].item() == 0.0 and f[3].item() == 0.0
    assert abs(grad[1].item()) < 1e-9 and grad[3].item() == 0.0


def test_bessel_basis_finite_at_zero_and_gradients():
    basis = BesselBasis(5.0, 8).double()
    r = torch.tensor([0.0, 1e-12, 1.0, 4.9], dtype=torch.float64, requires_grad=True)
    values = basis(r)
    assert torch.isfinite(values).all() and values.shape == (4, 8)
    (grad,) = torch.autograd.grad(values.sum(), r)
    assert torch.isfinite(grad).all()
    assert torch.allclose(values[0], values[1], atol=1e-9)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="cutoff"):
        BesselBasis(0.0)
    with pytest.raises(ValueError, match="p >= 2"):
        PolynomialCutoff(5.0, p=1)
    with pytest.raises(ValueError, match="neighbor_norm"):
        tiny_config(neighbor_norm="max")

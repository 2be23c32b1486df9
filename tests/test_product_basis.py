"""The MACE-style product-basis interaction (``model.interaction: mace``): symmetry, gradients,
files, config, and species surgery for fine-tuning."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from gdlphys import keys
from gdlphys.models.config import ModelConfig
from gdlphys.models.files import load_potential, save_potential
from gdlphys.models.potential import Potential
from gdlphys.nn import ProductInteraction, SymmetricProduct
from gdlphys.testing import (
    assert_forces_match_finite_differences,
    assert_potential_equivariant,
    assert_stress_matches_finite_differences,
)
from structures import batch_of, graph_of, random_crystal, random_molecule, tiny_config, tiny_potential

TOL = {torch.float64: (1e-9, 1e-9), torch.float32: (2e-3, 2e-4)}  # (energy eV, forces eV/Å)
OLD = [8, 1, 6]  # deliberately unsorted: old indices must survive surgery


def mace_potential(dtype: torch.dtype = torch.float64, **overrides) -> Potential:
    return tiny_potential(dtype, **{"interaction": "mace", "correlation": 3, **overrides})


@pytest.mark.parametrize("parity", [False, True])
def test_equivariance_molecules_and_crystals(dtype, parity):
    potential = mace_potential(dtype, parity=parity)
    data = batch_of([random_molecule(7, seed=1), random_crystal(3, seed=2), random_molecule(5, seed=3)], potential.cutoff, dtype)
    e_tol, f_tol = TOL[dtype]
    assert_potential_equivariant(potential, data, energy_atol=e_tol, forces_atol=f_tol, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("correlation", [1, 2, 4])
def test_equivariance_other_orders_and_l_max_3(correlation):
    potential = mace_potential(correlation=correlation, l_max=3 if correlation == 2 else 2)
    data = batch_of([random_molecule(9, seed=5), random_crystal(3, seed=6)], potential.cutoff)
    assert_potential_equivariant(potential, data, energy_atol=1e-9, forces_atol=1e-9, generator=torch.Generator().manual_seed(1))


def test_dipole_head_on_the_product_basis(dtype):
    potential = mace_potential(dtype, dipole=True)
    data = batch_of([random_molecule(7, seed=1), random_molecule(5, seed=3)], potential.cutoff, dtype)
    e_tol, f_tol = TOL[dtype]
    assert_potential_equivariant(potential, data, energy_atol=e_tol, forces_atol=f_tol, generator=torch.Generator().manual_seed(0))
    assert potential(data, compute_forces=False)[keys.DIPOLE].abs().max() > 1e-6


def test_forces_and_stress_are_minus_gradients():
    potential = mace_potential()
    assert_forces_match_finite_differences(potential, graph_of(random_molecule(6, seed=4), potential.cutoff), atol=1e-6)
    crystal = graph_of(random_crystal(3, seed=7), potential.cutoff)
    assert_forces_match_finite_differences(potential, crystal, atol=1e-6)
    assert_stress_matches_finite_differences(potential, crystal, atol=1e-7)


def test_lone_atoms_have_their_reference_energy():
    potential = mace_potential()
    atoms = random_molecule(3, seed=2)
    atoms.positions *= 10  # far beyond the cutoff of each other
    out = potential(graph_of(atoms, potential.cutoff))
    reference = dict(zip(potential.species, potential.reference_energies.tolist()))
    assert out[keys.ENERGY].item() == pytest.approx(sum(reference[z] for z in atoms.numbers), abs=1e-9)
    assert out[keys.FORCES].abs().max() == 0


def test_product_basis_is_many_body_and_its_order_matters():
    """nu = 1 is linear in the atomic basis A; nu = 3 is a cubic polynomial of it."""
    irreps = o3.Irreps("4x0e + 4x1o + 4x2e")
    attrs = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 3).double()
    x = torch.randn(3, irreps.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for correlation, degree in ((1, 1), (3, 3)):
        torch.manual_seed(0)
        product = SymmetricProduct(irreps, irreps, 3, correlation).double()
        scaled = [product(t * x, attrs) for t in (1.0, 2.0)]
        # the top-degree part dominates the ratio; degree 1 is exactly linear
        if degree == 1:
            torch.testing.assert_close(scaled[1], 2 * scaled[0], rtol=0, atol=1e-12)
        else:
            assert not torch.allclose(scaled[1], 2 * scaled[0], atol=1e-3)
    # the paths of each irrep for nu <= 3 of one channel of 0e + 1o + 2e (MACE's counts)
    assert SymmetricProduct(irreps, irreps, 3, 3).num_paths == [9, 8, 10]


def test_correlation_1_and_3_are_different_models():
    data = batch_of([random_molecule(7, seed=1)], 3.5)
    one, three = mace_potential(correlation=1), mace_potential(correlation=3)
    n_one = sum(p.numel() for p in one.parameters())
    n_three = sum(p.numel() for p in three.parameters())
    assert n_three > n_one  # more paths, more element-dependent weights
    assert not torch.allclose(one(data)[keys.ENERGY], three(data)[keys.ENERGY], rtol=0, atol=1e-6)
    blocks = [m for m in three.model if isinstance(m, ProductInteraction)]
    assert len(blocks) == 2 and all(b.product.correlation == 3 for b in blocks)
    assert all(m.product.correlation == 1 for m in one.model if isinstance(m, ProductInteraction))


def test_the_product_basis_is_the_default_and_nequip_builds_none():
    assert ModelConfig().interaction == "mace"
    assert any(isinstance(m, ProductInteraction) for m in tiny_potential().model)
    assert not any(isinstance(m, ProductInteraction) for m in tiny_potential(interaction="nequip").model)


def test_files_without_an_interaction_record_load_as_nequip(tmp_path):
    potential = tiny_potential(interaction="nequip")
    path = save_potential(potential, tmp_path / "old" / "potential.pt")
    blob = torch.load(path, weights_only=True)
    del blob["config"]["interaction"], blob["config"]["correlation"]  # as written before the option existed
    torch.save(blob, path)
    loaded = load_potential(path)
    assert loaded.config.interaction == "nequip"
    data = batch_of([random_molecule(5, seed=2)], potential.cutoff)
    assert torch.equal(loaded(data)[keys.ENERGY], potential(data)[keys.ENERGY])


def test_save_load_round_trip(tmp_path):
    potential = mace_potential(dipole=True, correlation=2)
    data = batch_of([random_molecule(6, seed=3), random_crystal(3, seed=1)], potential.cutoff)
    path = save_potential(potential, tmp_path / "mace" / "potential.pt")
    loaded = load_potential(path)
    assert loaded.config == potential.config and loaded.config.interaction == "mace" and loaded.config.correlation == 2
    want, got = potential(data), loaded(data)
    for key in (keys.ENERGY, keys.FORCES, keys.DIPOLE):
        assert torch.equal(got[key], want[key])


def test_old_config_without_the_new_fields_is_nequip():
    old = {k: v for k, v in tiny_config().to_dict().items() if k not in ("interaction", "correlation")}
    config = ModelConfig.from_dict(old)
    assert config.interaction == "nequip" and config.correlation == 3


@pytest.mark.parametrize(
    "bad, field",
    [({"interaction": "foo"}, "model.interaction"), ({"correlation": 0}, "model.correlation"), ({"correlation": 2.5}, "model.correlation")],
)
def test_bad_values_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**bad)
    with pytest.raises(ValueError, match=field):
        ModelConfig.from_dict({"interaction": "mace", **bad})


def test_float64_coupling_survives_a_float32_round_trip():
    """Built in float32 then cast: the coupling is rebuilt from float64, not upcast from float32."""
    potential = mace_potential(torch.float32).double()
    product = next(m for m in potential.model if isinstance(m, ProductInteraction)).product
    assert product.coupling.dtype == torch.float64
    assert torch.equal(product.coupling, product._coupling64)


# Species surgery for fine-tuning (grow_species, species_entry_masks) on this block: tests/test_finetune.py,
# parametrised over the interaction.


def test_path_counts_match_e3nn_reduced_tensor_products():
    """Oracle: the independent paths of A^(x nu) into each irrep are those of the symmetric tensor power."""
    channel = o3.Irreps("0e + 1o + 2e")
    for order, formula in ((2, "ij=ji"), (3, "ijk=jik=ikj")):
        oracle = o3.ReducedTensorProducts(formula, **{index: channel for index in formula.split("=")[0]}).irreps_out
        target = o3.Irreps([(1, ir) for _, ir in oracle.simplify()])
        ours = SymmetricProduct(o3.Irreps("2x0e + 2x1o + 2x2e"), target, 1, order)
        lower = SymmetricProduct(o3.Irreps("2x0e + 2x1o + 2x2e"), target, 1, order - 1)
        counts = dict(zip((ir for _, ir in ours.irreps_out), ours.num_paths))
        lower_counts = dict(zip((ir for _, ir in lower.irreps_out), lower.num_paths))
        assert {ir: counts[ir] - lower_counts.get(ir, 0) for ir in counts} == {ir: mul for mul, ir in oracle.simplify()}


@pytest.mark.parametrize("reflect", [False, True])
def test_symmetric_product_is_equivariant_where_products_vanish(reflect):
    """0e + 1o + 2e cubed reaches 1e and 2o but not 0o (1o x 1o x 1o -> 0o is antisymmetric)."""
    from gdlphys.testing import O3Element

    irreps_in = o3.Irreps("3x0e + 3x1o + 3x2e")
    target = o3.Irreps("3x0e + 3x0o + 3x1e + 3x1o + 3x2e + 3x2o")
    product = SymmetricProduct(irreps_in, target, 2, 3).double()
    assert o3.Irrep("0o") not in {ir for _, ir in product.irreps_out}
    x = torch.randn(4, irreps_in.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    attrs = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).double()
    g = O3Element.random(reflect, torch.Generator().manual_seed(5))
    turned_first = product(x @ g.D(irreps_in).T, attrs)
    turned_after = product(x, attrs) @ g.D(product.irreps_out).T
    torch.testing.assert_close(turned_first, turned_after, rtol=0, atol=1e-12)

"""The whole potential under E(3) x permutations, finite differences, extensivity, cutoff smoothness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from gdlphys import keys
from gdlphys.models.potential import UnknownElementError
from gdlphys.testing import (
    assert_forces_match_finite_differences,
    assert_potential_equivariant,
    assert_stress_matches_finite_differences,
)
from structures import batch_of, graph_of, random_crystal, random_molecule, tiny_potential

TOL = {torch.float64: (1e-9, 1e-9), torch.float32: (2e-3, 2e-4)}  # (energy eV, forces eV/Å)


@pytest.mark.parametrize("parity", [False, True])
def test_equivariance_molecules_and_crystals(dtype, parity):
    potential = tiny_potential(dtype, parity=parity)
    data = batch_of([random_molecule(7, seed=1), random_crystal(3, seed=2), random_molecule(5, seed=3)], potential.cutoff, dtype)
    e_tol, f_tol = TOL[dtype]
    assert_potential_equivariant(potential, data, energy_atol=e_tol, forces_atol=f_tol, generator=torch.Generator().manual_seed(0))


def test_equivariance_tolerances_of_the_issue_float64():
    potential = tiny_potential(torch.float64, l_max=3, num_layers=3)
    data = batch_of([random_molecule(12, seed=5)], potential.cutoff)
    assert_potential_equivariant(potential, data, energy_atol=1e-6, forces_atol=1e-5)


def test_forces_are_minus_gradient_molecule():
    potential = tiny_potential()
    assert_forces_match_finite_differences(potential, graph_of(random_molecule(6, seed=4), potential.cutoff), atol=1e-6)


def test_forces_and_stress_periodic():
    potential = tiny_potential()
    data = graph_of(random_crystal(3, seed=7), potential.cutoff)
    assert_forces_match_finite_differences(potential, data, atol=1e-6)
    assert_stress_matches_finite_differences(potential, data, atol=1e-7)


def test_supercell_is_extensive():
    potential = tiny_potential()
    atoms = random_crystal(3, seed=8)
    supercell = atoms.repeat((2, 1, 3))
    e1 = potential(graph_of(atoms, potential.cutoff))[keys.ENERGY].item()
    out = potential(graph_of(supercell, potential.cutoff), compute_stress=True)
    assert out[keys.ENERGY].item() == pytest.approx(6 * e1, abs=1e-8 * 6 * abs(e1))
    small = potential(graph_of(atoms, potential.cutoff), compute_stress=True)
    assert torch.allclose(out[keys.STRESS], small[keys.STRESS], atol=1e-9)


def test_wrapping_atoms_changes_nothing():
    potential = tiny_potential()
    atoms = random_crystal(4, seed=9)
    moved = atoms.copy()
    moved.positions += moved.cell.array[0] * 2 - moved.cell.array[2] * 3  # whole lattice translations
    moved.positions[1] += moved.cell.array[1]  # one atom to another image
    ref = potential(graph_of(atoms, potential.cutoff))
    out = potential(graph_of(moved, potential.cutoff))
    assert out[keys.ENERGY].item() == pytest.approx(ref[keys.ENERGY].item(), abs=1e-9)
    assert torch.allclose(out[keys.FORCES], ref[keys.FORCES], atol=1e-9)


def test_batch_equals_separate():
    potential = tiny_potential()
    structures = [random_molecule(5, seed=s) for s in range(3)] + [random_crystal(2, seed=4)]
    batched = potential(batch_of(structures, potential.cutoff))
    for k, atoms in enumerate(structures):
        alone = potential(graph_of(atoms, potential.cutoff))
        assert batched[keys.ENERGY][k].item() == pytest.approx(alone[keys.ENERGY].item(), abs=1e-9)


def test_energy_is_smooth_at_the_cutoff():
    """Two atoms crossing the cutoff: energy and force go continuously to their isolated values."""
    potential = tiny_potential()
    from ase import Atoms

    rc = potential.cutoff
    energies, forces = [], []
    for r in np.linspace(rc - 1e-3, rc + 1e-3, 11):
        out = potential(graph_of(Atoms("CO", positions=[[0, 0, 0], [r, 0, 0]]), rc))
        energies.append(out[keys.ENERGY].item())
        forces.append(out[keys.FORCES][1, 0].item())
    assert np.max(np.abs(np.diff(energies))) < 1e-9
    assert np.max(np.abs(forces)) < 1e-8


def test_unknown_element_is_named():
    potential = tiny_potential()
    from ase import Atoms

    with pytest.raises(UnknownElementError, match="Si"):
        potential(graph_of(Atoms("SiH4", positions=np.random.default_rng(0).normal(size=(5, 3)) * 2), potential.cutoff))


def test_isolated_atoms_have_zero_force_and_their_reference_energy(dtype):
    potential = tiny_potential(dtype)
    from ase import Atoms

    e0 = potential.reference_energies  # H, C, N, O
    out = potential(graph_of(Atoms("CH", positions=[[0, 0, 0], [10, 0, 0]]), potential.cutoff, dtype))
    assert torch.count_nonzero(out[keys.FORCES]) == 0
    assert torch.equal(out[keys.ATOMIC_ENERGIES], e0[[1, 0]])
    # a batch: a molecule, a lone atom, and a molecule with one far-away atom
    far = random_molecule(5, seed=4) + Atoms("N", positions=[[20.0, 0, 0]])
    data = batch_of([random_molecule(6, seed=3), Atoms("O"), far], potential.cutoff, dtype)
    out = potential(data)
    assert torch.equal(out[keys.ATOMIC_ENERGIES][6], e0[3]) and torch.equal(out[keys.ATOMIC_ENERGIES][-1], e0[2])
    assert torch.count_nonzero(out[keys.FORCES][6]) == 0 and torch.count_nonzero(out[keys.FORCES][-1]) == 0
    bound = e0[potential.species_index(data[keys.ATOMIC_NUMBERS][:6])].sum()
    assert abs(float(out[keys.ENERGY][0] - bound)) > 1e-3  # neighbours do change the energy


def test_isolated_anchoring_is_learnt_through_in_training():
    """In training the correction is recomputed every call, so gradients reach every weight."""
    potential = tiny_potential(torch.float64).train()
    data = graph_of(random_molecule(6, seed=5), potential.cutoff)
    potential(data, compute_forces=False)[keys.ENERGY].sum().backward()
    embedding = potential.model[0].linear.weight
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0
    with torch.no_grad():
        embedding.add_(0.1)
    lone = graph_of(Atoms("C"), potential.cutoff)
    assert potential(lone, compute_forces=False)[keys.ENERGY].item() == potential.reference_energies[1].item()


def test_anchoring_follows_weight_changes():
    potential = tiny_potential(torch.float64)
    for parameter in potential.parameters():
        parameter.requires_grad_(False)
    molecule = graph_of(random_molecule(6, seed=5), potential.cutoff)
    lone = graph_of(Atoms("C"), potential.cutoff)
    before = potential(molecule, compute_forces=False)[keys.ENERGY]
    with torch.no_grad():
        potential.model[0].linear.weight.mul_(1.5)  # in place: bumps the version counter
    after = potential(molecule, compute_forces=False)[keys.ENERGY]
    assert after != before
    assert potential(lone, compute_forces=False)[keys.ENERGY].item() == potential.reference_energies[1].item()
    other = tiny_potential(torch.float64, seed=1)
    potential.load_state_dict(other.state_dict())
    assert potential(molecule, compute_forces=False)[keys.ENERGY] == other(molecule, compute_forces=False)[keys.ENERGY]
    potential.to(torch.float32)
    molecule32 = graph_of(random_molecule(6, seed=5), potential.cutoff, torch.float32)
    expected = other.to(torch.float32)(molecule32, compute_forces=False)[keys.ENERGY]
    assert potential(molecule32, compute_forces=False)[keys.ENERGY] == expected


def test_a_float64_potential_keeps_its_reference_energies_to_float64():
    """E0 of ~1000 eV rounded through float32 would be off by ~1e-4 eV: the buffer takes the potential's dtype."""
    from gdlphys.models.config import ModelConfig
    from gdlphys.models.potential import Potential

    reference = [-13.605693122994, -1029.863512237471, -2041.340123456789]
    potential = Potential(ModelConfig(num_features=8, num_layers=1), [1, 6, 8], reference, 10.0, dtype=torch.float64)
    assert potential.reference_energies.dtype == torch.float64
    assert potential.reference_energies.tolist() == reference
    single = Potential(ModelConfig(num_features=8, num_layers=1), [1, 6, 8], reference, 10.0)
    assert single.reference_energies.dtype == torch.float32 == single.dtype

"""The equivariant dipole head: symmetry, neutrality, training, files, calculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdlphys import keys
from gdlphys.calculator import GDLCalculator
from gdlphys.models.config import ModelConfig
from gdlphys.models.files import load_potential, save_potential
from gdlphys.nn.scatter import scatter_sum
from gdlphys.testing import assert_potential_equivariant
from structures import batch_of, random_molecule, tiny_potential

TOL = {torch.float64: (1e-9, 1e-9), torch.float32: (2e-3, 2e-4)}


@pytest.mark.parametrize("parity", [False, True])
def test_dipole_is_a_polar_vector(dtype, parity):
    potential = tiny_potential(dtype, parity=parity, dipole=True)
    data = batch_of([random_molecule(7, seed=1), random_molecule(5, seed=3)], potential.cutoff, dtype)
    e_tol, f_tol = TOL[dtype]
    assert_potential_equivariant(potential, data, energy_atol=e_tol, forces_atol=f_tol, generator=torch.Generator().manual_seed(0))


def test_charges_are_neutral_per_molecule_and_the_dipole_does_not_depend_on_the_origin():
    potential = tiny_potential(dipole=True)
    data = batch_of([random_molecule(7, seed=1), random_molecule(4, seed=2)], potential.cutoff)
    out = potential(data, compute_forces=False)
    totals = scatter_sum(out[keys.ATOMIC_CHARGES], data[keys.BATCH], 2)
    assert torch.allclose(totals, torch.zeros(2, dtype=totals.dtype), atol=1e-12)
    assert out[keys.DIPOLE].shape == (2, 3)
    assert out[keys.DIPOLE].abs().max() > 1e-6  # random weights: not trivially zero


def test_the_dipole_head_needs_vector_features():
    with pytest.raises(ValueError, match="l_max >= 1"):
        ModelConfig(l_max=0, dipole=True)


def test_dipole_head_does_not_change_energy_or_forces():
    plain = tiny_potential(seed=3)
    with_head = tiny_potential(seed=3, dipole=True)
    with_head.load_state_dict({**with_head.state_dict(), **plain.state_dict()})
    data = batch_of([random_molecule(6, seed=4)], plain.cutoff)
    a, b = plain(data), with_head(data)
    assert torch.equal(a[keys.ENERGY], b[keys.ENERGY]) and torch.equal(a[keys.FORCES], b[keys.FORCES])
    assert keys.DIPOLE not in a


def test_dipole_survives_save_and_load_and_reaches_the_calculator(tmp_path):
    potential = tiny_potential(dipole=True)
    path = save_potential(potential, tmp_path / "p.pt")
    loaded = load_potential(path)
    mol = random_molecule(6, seed=5)
    data = batch_of([mol], potential.cutoff)
    assert torch.allclose(loaded.double()(data)[keys.DIPOLE], potential(data)[keys.DIPOLE])
    calc = GDLCalculator(path, dtype="float64")
    assert "dipole" in calc.implemented_properties
    mol.calc = calc
    assert np.allclose(mol.get_dipole_moment(), potential(data)[keys.DIPOLE][0].detach().numpy())
    charges = calc.get_property("charges", mol)
    assert charges.shape == (len(mol),) and abs(charges.sum()) < 1e-9


def test_dipole_loss_is_learnt():
    from gdlphys.train.config import FitConfig
    from gdlphys.train.system import PotentialTask

    torch.manual_seed(0)
    potential = tiny_potential(torch.float32, dipole=True).train()
    graphs = [random_molecule(5, seed=s) for s in range(4)]
    data = batch_of(graphs, potential.cutoff, torch.float32)
    pred = potential(data, compute_forces=True)
    # labels: a fixed field of charges, so there is something definite to fit
    data[keys.ENERGY] = pred[keys.ENERGY].detach()
    data[keys.FORCES] = pred[keys.FORCES].detach()
    q = torch.tensor([0.3, -0.1, -0.1, -0.1] * 5, dtype=torch.float32)[: data[keys.POSITIONS].shape[0]]
    q = q - (scatter_sum(q, data[keys.BATCH], 4) / data[keys.NUM_ATOMS])[data[keys.BATCH]]
    data[keys.DIPOLE] = scatter_sum(q[:, None] * data[keys.POSITIONS], data[keys.BATCH], 4)
    task = PotentialTask(potential, FitConfig(ema_decay=0.0))
    optimizer = torch.optim.Adam(potential.parameters(), lr=0.01)
    first = None
    for _ in range(60):
        parts = task._loss(task._predict(potential, data, training=True), data)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(parts["dipole"].detach())
    assert float(parts["dipole"]) < 0.2 * first

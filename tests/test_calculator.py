"""The ASE calculator: oracle against ASE's Lennard-Jones, finite differences, dtype, caching, MD."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.lj import LennardJones
from structures import random_crystal, random_molecule, tiny_potential

from gdlphys.calculator import GDLCalculator
from gdlphys.md import run_md
from gdlphys.models.potential import UnknownElementError
from gdlphys.testing.oracle import LennardJonesEnergy


def _lj_potential(sigma=2.3, epsilon=0.01, cutoff=5.0):
    potential = tiny_potential(torch.float64, cutoff=cutoff)
    potential.model = LennardJonesEnergy(sigma, epsilon, cutoff)
    return potential


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("structure", ["molecule", "fcc", "triclinic"])
def test_lennard_jones_oracle(structure, dtype):
    sigma, epsilon, rc = 2.3, 0.01, 5.0
    if structure == "molecule":
        atoms = random_molecule(10, seed=3, species=[6])
        atoms.positions *= 1.6
    elif structure == "fcc":
        atoms = bulk("C", "fcc", a=3.6) * (2, 1, 1)
        atoms.rattle(0.05, seed=1)
    else:
        atoms = random_crystal(3, seed=5, species=[6], length=3.4)
    atoms.calc = GDLCalculator(_lj_potential(sigma, epsilon, rc), dtype=dtype)
    ref = atoms.copy()
    ref.calc = LennardJones(sigma=sigma, epsilon=epsilon, rc=rc, smooth=False)
    tol = 1e-9 if dtype == "float64" else 2e-4
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=tol * len(atoms) * 10)
    np.testing.assert_allclose(atoms.get_potential_energies(), ref.get_potential_energies(), atol=tol * 10)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=tol * 10)
    if atoms.pbc.all():
        np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), atol=tol)


def test_forces_and_stress_against_ase_finite_differences():
    atoms = random_crystal(3, seed=11)
    atoms.calc = GDLCalculator(tiny_potential(torch.float32), dtype="float64")
    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=1e-6)
    numeric_stress = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_stress(), numeric_stress, atol=1e-7)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)


def test_float64_on_a_float32_potential_leaves_the_original_alone():
    potential = tiny_potential(torch.float32)
    before = copy.deepcopy(potential.state_dict())
    calc = GDLCalculator(potential, dtype="float64")
    assert calc.potential.dtype == torch.float64 and potential.dtype == torch.float32
    for key, value in potential.state_dict().items():
        assert torch.equal(value, before[key])
    atoms = random_molecule(5, seed=2)
    atoms.calc = calc
    e64 = atoms.get_potential_energy()
    atoms.calc = GDLCalculator(potential)
    assert e64 == pytest.approx(atoms.get_potential_energy(), abs=1e-3)


def test_results_follow_every_input_change():
    atoms = random_crystal(3, seed=12)
    atoms.calc = GDLCalculator(tiny_potential())
    e0 = atoms.get_potential_energy()
    assert atoms.get_potential_energy() == e0  # cached
    atoms.positions[0] += 0.05
    e1 = atoms.get_potential_energy()
    assert e1 != e0
    atoms.set_cell(atoms.cell.array * 1.02, scale_atoms=False)
    e2 = atoms.get_potential_energy()
    assert e2 != e1
    atoms.numbers[1] = 8 if atoms.numbers[1] != 8 else 7
    e3 = atoms.get_potential_energy()
    assert e3 != e2
    atoms.pbc = [True, True, False]
    assert atoms.get_potential_energy() != e3


def test_unknown_element_and_empty_structure():
    calc = GDLCalculator(tiny_potential())
    atoms = Atoms("CSi", positions=[[0, 0, 0], [1.8, 0, 0]])
    atoms.calc = calc
    with pytest.raises(UnknownElementError, match="Si"):
        atoms.get_potential_energy()
    empty = Atoms()
    empty.calc = calc
    with pytest.raises(ValueError, match="empty"):
        empty.get_potential_energy()


def test_stress_needs_a_periodic_structure():
    atoms = random_molecule(4)
    atoms.calc = GDLCalculator(tiny_potential())
    with pytest.raises(ValueError, match="periodic"):
        atoms.get_stress()


def test_short_nve_conserves_energy():
    d = 2 ** (1 / 6) * 2.3 / np.sqrt(2)  # an LJ octahedron near its minimum
    atoms = Atoms("C6", positions=[[d, 0, 0], [-d, 0, 0], [0, d, 0], [0, -d, 0], [0, 0, d], [0, 0, -d]])
    atoms.calc = GDLCalculator(_lj_potential(2.3, 0.05, 5.0))
    report = run_md(atoms, steps=300, timestep_fs=1.0, temperature_k=100.0, progress=False)
    assert report.max_deviation_mev_per_atom < 0.5
    assert report.steps_per_second > 0


class _ThreadsSeen(LennardJonesEnergy):
    """Lennard-Jones that records torch's thread count at each call: what the calculator ran it with."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.seen: list[int] = []

    def forward(self, data):
        self.seen.append(torch.get_num_threads())
        return super().forward(data)


@pytest.mark.parametrize("threads, inside", [(None, 1), (2, 2)])
def test_threads_are_set_inside_each_call_and_the_callers_are_back_after(threads, inside):
    potential = tiny_potential(torch.float64)
    potential.model = _ThreadsSeen(2.3, 0.01, 5.0)
    atoms = random_molecule(10, seed=3, species=[6])
    atoms.positions *= 1.6
    atoms.calc = calc = GDLCalculator(potential, threads=threads)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # the script's own choice: neither what the policy picks here nor 2
        for _ in range(3):
            atoms.positions[0] += 0.01
            atoms.get_forces()
            assert torch.get_num_threads() == 3
        assert calc.potential.model.seen == [inside] * 3  # None: one thread for a 10-atom molecule
        atoms.numbers[0] = 14  # an element it does not know: the call fails, the setting still comes back
        with pytest.raises(UnknownElementError):
            atoms.get_forces()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_threads_must_be_a_positive_integer():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            GDLCalculator(tiny_potential(), threads=bad)


@pytest.mark.skipif(
    os.environ.get("GDLPHYS_TEST_COMPILE") != "1",
    reason="compiling takes minutes on a CPU: run with GDLPHYS_TEST_COMPILE=1 (gdlphys bench md --compile checks it too)",
)
def test_compiled_calculator_matches_eager_across_changing_graphs():
    potential = tiny_potential(torch.float32)
    eager = GDLCalculator(potential)
    compiled = GDLCalculator(potential, compile=True)
    for seed, n_atoms in enumerate((7, 12, 5)):  # new edge and atom counts each call: no recompiling, same results
        atoms = random_molecule(n_atoms, seed=seed)
        want_e, want_f = eager.get_potential_energy(atoms), eager.get_forces(atoms)
        got_e, got_f = compiled.get_potential_energy(atoms), compiled.get_forces(atoms)
        assert compiled.compile, "torch.compile fell back to eager"
        np.testing.assert_allclose(got_f, want_f, atol=1e-5)
        assert got_e == pytest.approx(want_e, abs=1e-4)
    assert not hasattr(potential, "eager_model")  # the caller's potential is untouched

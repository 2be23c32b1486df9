"""Bad and borderline structures through the calculator: a correct result or an error naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from gdlphys.calculator import GDLCalculator
from gdlphys.models.potential import UnknownElementError
from structures import random_molecule, tiny_potential

@pytest.fixture(scope="module")
def calculator() -> GDLCalculator:
    return GDLCalculator(tiny_potential())


E0 = {"H": -13.6, "C": -1030.0, "N": -1485.0, "O": -2040.0}  # tiny_potential's reference energies


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "atoms",
    [
        Atoms("C"),
        Atoms("O", positions=[[1e3, -2e3, 5.0]]),
        Atoms("CHO", positions=[[0, 0, 0], [3.6, 0, 0], [0, 0, 8.0]]),  # all beyond the 3.5 Å cutoff
        Atoms("NH", positions=[[0, 0, 0], [4.0, 0, 0]], cell=np.eye(3) * 9.0, pbc=True),
    ],
    ids=["one-atom", "one-atom-far", "no-neighbours", "periodic-no-neighbours"],
)
def test_atoms_without_neighbours_have_their_reference_energy_and_no_force(atoms, dtype, calculator):
    atoms.calc = GDLCalculator(calculator.potential, dtype=dtype)
    expected = [E0[s] for s in atoms.get_chemical_symbols()]
    assert np.array_equal(atoms.get_forces(), np.zeros((len(atoms), 3)))
    # the reference energies were given as float32 numbers (tiny_potential), so they compare exactly as such
    assert np.array_equal(atoms.get_potential_energies(), np.float32(expected))
    assert atoms.get_potential_energy() == pytest.approx(sum(expected), rel=1e-7)
    if atoms.pbc.all():
        assert np.array_equal(atoms.get_stress(), np.zeros(6))


def test_an_atom_leaving_the_cutoff_goes_smoothly_to_its_reference_energy(calculator):
    calc = calculator
    energies = []
    for distance in np.linspace(3.3, 3.6, 31):
        atoms = Atoms("CO", positions=[[0, 0, 0], [distance, 0, 0]])
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() - E0["C"] - E0["O"])
    assert energies[-1] == 0.0 and energies[-10] == 0.0  # at and past the cutoff
    assert np.max(np.abs(np.diff(energies))) < 1e-4  # no jump on the way there
    assert abs(energies[0]) > 1e-9


def _error(atoms: Atoms, calculator: GDLCalculator) -> str:
    atoms.calc = calculator
    with pytest.raises(ValueError) as excinfo:
        atoms.get_forces()
    return str(excinfo.value)


def test_bad_structures_are_named(calculator):
    assert "empty structure" in _error(Atoms(), calculator)
    molecule = random_molecule(6, seed=1)
    molecule.positions[4] = molecule.positions[1]
    assert "atoms 1 and 4 sit at the same place" in _error(molecule, calculator)
    molecule = random_molecule(6, seed=1)
    molecule.positions[3, 1] = np.nan
    message = _error(molecule, calculator)
    assert "atom 3" in message and "not finite" in message and molecule.get_chemical_symbols()[3] in message
    molecule = random_molecule(6, seed=1)
    molecule.positions[5] = [np.inf, 0, 0]
    assert "position of atom 5" in _error(molecule, calculator)
    flat = Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    assert "zero volume" in _error(flat, calculator)
    no_cell = Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], pbc=True)
    assert "zero volume" in _error(no_cell, calculator)
    nan_cell = Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[[np.nan, 0, 0], [0, 3, 0], [0, 0, 3]], pbc=True)
    assert "cell is not finite" in _error(nan_cell, calculator)
    unknown = Atoms("CFeU", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]])
    unknown.calc = calculator
    with pytest.raises(UnknownElementError, match="Fe, U not supported.*knows H, C, N, O"):
        unknown.get_forces()


def test_a_flat_cell_is_fine_when_that_direction_is_not_periodic(calculator):
    atoms = Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=[True, True, False])
    atoms.calc = calculator
    assert np.isfinite(atoms.get_potential_energy()) and np.isfinite(atoms.get_forces()).all()


def test_the_calculator_never_returns_nan():
    potential = tiny_potential(torch.float64)
    with torch.no_grad():
        potential.model[-1].scale.fill_(float("nan"))
    atoms = random_molecule(5, seed=2)
    atoms.calc = GDLCalculator(potential)
    with pytest.raises(FloatingPointError, match="non-finite energy"):
        atoms.get_potential_energy()

"""Many structures per forward pass give what one at a time gives: energies and forces,
BFGS relaxations (same trajectories), Hessians; results in input order."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ase.optimize import BFGS

from gdlphys.batch import evaluate_many, hessians_many, relax_many
from gdlphys.calculator import GDLCalculator
from gdlphys.molecules import smiles_to_atoms
from gdlphys.vibrations import hessian_autograd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structures import random_molecule  # noqa: E402

SMILES = ["CCO", "OC=O", "CCOC", "C=CC=O", "OCCO"]


def _calc() -> GDLCalculator:
    return GDLCalculator("ethanol-xtb", dtype="float64")


def _structures():
    return [smiles_to_atoms(s, seed=1)[0] for s in SMILES] + [random_molecule(5, seed=2, species=[1, 6, 8])]


def test_batched_energies_and_forces_equal_the_calculator_in_input_order():
    calc = _calc()
    structures = _structures()
    batched = evaluate_many(structures, calc, batch_size=4)
    assert len(batched) == len(structures)
    for atoms, result in zip(structures, batched):
        one = atoms.copy()
        one.calc = calc
        assert abs(result["energy"] - one.get_potential_energy()) < 1e-9
        np.testing.assert_allclose(result["forces"], one.get_forces(), atol=1e-9)


def test_batched_relaxation_takes_each_molecule_bfgs_path():
    calc = _calc()
    structures = [smiles_to_atoms(s, seed=3)[0] for s in SMILES]
    batched = relax_many(structures, calc, fmax=0.01, steps=200, batch_size=3)
    for atoms, (relaxed, energy, converged) in zip(structures, batched):
        alone = atoms.copy()
        alone.calc = calc
        ok = BFGS(alone, logfile=None).run(fmax=0.01, steps=200)
        assert converged == bool(ok)
        np.testing.assert_allclose(relaxed.positions, alone.positions, atol=1e-6)
        assert abs(energy - alone.get_potential_energy()) < 1e-8
        assert np.abs(alone.get_forces()).max() < 0.01 or not converged


def test_batched_hessians_equal_one_at_a_time():
    calc = _calc()
    structures = _structures()[:4]
    for atoms, hessian in zip(structures, hessians_many(structures, calc)):
        alone = hessian_autograd(calc.potentials, calc.graph(atoms))
        assert hessian.shape == (3 * len(atoms), 3 * len(atoms))
        np.testing.assert_allclose(hessian, alone, atol=1e-8)

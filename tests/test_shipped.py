"""The shipped potential works as its card says: test-set errors, 1 ps-scale NVE, presets."""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.io import read

import gdlphys
from gdlphys.md import run_md
from gdlphys.train.evaluate import evaluate_potential

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets" / "ethanol-xtb"


def test_shipped_ethanol_potential_on_held_out_frames():
    result = evaluate_potential(gdlphys.load("ethanol-xtb"), DATA / "test.h5")
    assert result.metrics["n_frames"] == 200
    assert result.metrics["forces_mae"] < 0.08  # eV/Å; the card gives the measured figure
    assert result.metrics["energy_per_atom_mae"] < 0.005  # eV/atom


def test_shipped_ethanol_potential_conserves_energy_in_nve():
    atoms = read(DATA / "ethanol.xyz")
    atoms.calc = gdlphys.GDLCalculator("ethanol-xtb", dtype="float64")
    report = run_md(atoms, steps=600, timestep_fs=0.5, temperature_k=300.0, progress=False)
    assert abs(report.drift_mev_per_atom) < 0.5
    assert report.max_deviation_mev_per_atom < 1.0
    assert 50 < report.mean_temperature_k < 400


def test_unknown_element_is_named_by_the_shipped_potential():
    from ase import Atoms

    atoms = Atoms("CCl", positions=[[0, 0, 0], [1.8, 0, 0]])
    atoms.calc = gdlphys.GDLCalculator("ethanol-xtb")
    with pytest.raises(ValueError, match="Cl"):
        atoms.get_potential_energy()


def test_earlier_organic_potentials_still_load_and_answer():
    """organic-xtb 1 (potential format 2, NequIP-style blocks) and 2 ship beside the current version
    and load as they did: each gives its card's error on version 1's test molecules."""
    folder = ROOT / "potentials" / "organic-xtb"
    v1, v2, new = gdlphys.load(folder / "potential-v1.pt"), gdlphys.load(folder / "potential-v2.pt"), gdlphys.load("organic-xtb")
    assert v1.species == v2.species == new.species
    frames = ROOT / "datasets" / "nci-xtb" / "test.h5"
    v1_errors = evaluate_potential(v1, frames).metrics
    assert v1_errors["forces_mae"] == pytest.approx(0.140, abs=0.005)  # version 1's card: 140 meV/Å
    assert evaluate_potential(v2, frames).metrics["forces_mae"] == pytest.approx(0.0638, abs=0.003)  # version 2's card
    assert evaluate_potential(new, frames).metrics["forces_mae"] < v1_errors["forces_mae"]


def test_organic_committee_spread_ranks_its_error_on_drug_like_frames():
    """The organic committee (ase_calculators/organic-committee.yaml): its mean forces, and a per-atom
    spread that ranks the actual error (card: Spearman 0.68 on all 120 drug-like frames, spread ~6.6x smaller)."""
    import numpy as np
    from scipy.stats import spearmanr

    from gdlphys.data import read_hdf5

    calc = gdlphys.load_calculator("organic-committee")
    assert len(calc.potentials) == 3
    spreads, errors = [], []
    for atoms in read_hdf5(ROOT / "datasets" / "nci-xtb" / "druglike-2.h5")[::6]:
        reference = atoms.get_forces()
        atoms.calc = calc
        errors.append(np.linalg.norm(atoms.get_forces() - reference, axis=1))
        spreads.append(calc.results["forces_std"])
    spread, error = np.concatenate(spreads), np.concatenate(errors)
    assert spearmanr(spread, error).statistic > 0.4
    assert 2 < error.mean() / spread.mean() < 20  # underestimates, by the card's factor give or take

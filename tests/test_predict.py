"""SMILES -> properties: exact autograd Hessian, frequencies against ASE, per-molecule errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from gdlphys.calculator import GDLCalculator
from gdlphys.predict import predict
from gdlphys.vibrations import geometry_kind, harmonic_modes, hessian_autograd, hessian_finite_differences
from structures import random_molecule, tiny_potential


def test_autograd_hessian_equals_finite_differences():
    atoms = random_molecule(5, seed=1)
    calc = GDLCalculator(tiny_potential(), dtype="float64")
    atoms.calc = calc
    exact = hessian_autograd(calc.potentials, calc.graph(atoms))
    numeric = hessian_finite_differences(atoms, step=1e-4)
    np.testing.assert_allclose(exact, numeric, atol=1e-5)
    np.testing.assert_allclose(exact, exact.T, atol=1e-12)


def test_frequencies_agree_with_ase_vibrations(tmp_path, monkeypatch):
    from gdlphys.data.label import tblite_calculator

    monkeypatch.chdir(tmp_path)  # ASE's Vibrations writes its cache to the working directory
    water = Atoms("OH2", positions=[[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47]])
    water.calc = tblite_calculator()
    BFGS(water, logfile=None).run(fmax=1e-4)
    ours = harmonic_modes(water, hessian_finite_differences(water, step=0.01)).frequencies_cm1
    vib = Vibrations(water, delta=0.01)
    vib.run()
    theirs = np.sort(vib.get_frequencies().real)[-3:]
    np.testing.assert_allclose(ours, theirs, atol=2.0)


def test_geometry_kinds():
    assert geometry_kind(Atoms("Ar")) == "monatomic"
    assert geometry_kind(Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]])) == "linear"
    assert geometry_kind(Atoms("OH2", positions=[[0, 0, 0], [0, 0.76, 0.58], [0, -0.76, 0.58]])) == "nonlinear"


def test_predict_keeps_order_and_reports_each_failure():
    inputs = ["CCO", "C1CC", "[NH4+]", "CCl", "CO.O"]
    results = predict(inputs, "ethanol-xtb", conformers=2, progress=False)
    assert [r.smiles for r in results] == inputs
    ethanol = results[0]
    assert ethanol.error is None and len(ethanol.frequencies_cm1) == 21 and ethanol.n_imaginary == 0
    assert len(ethanol.conformer_energies) == 2 and ethanol.energy == pytest.approx(min(ethanol.conformer_energies))
    assert 1.8 < ethanol.zpe_ev < 2.4  # ethanol's ZPE is about 2.1 eV
    assert ethanol.gibbs_ev < ethanol.enthalpy_ev and ethanol.entropy_ev_per_k > 0
    assert "invalid SMILES" in results[1].error
    assert "charge" in results[2].error
    assert "Cl" in results[3].error
    assert "fragment" in results[4].error


def test_batched_predict_gives_the_one_at_a_time_answers():
    inputs = ["CCO", "not-a-smiles", "OCC=O", "C[NH3+]", "CCOC", "OC=O"]
    batched = predict(inputs, "ethanol-xtb", conformers=2, batch_size=4, progress=False)
    alone = predict(inputs, "ethanol-xtb", conformers=2, batch_size=1, processes=1, progress=False)
    workers = predict(inputs, "ethanol-xtb", conformers=2, batch_size=1, processes=2, progress=False)
    assert [r.smiles for r in batched] == [r.smiles for r in workers] == inputs
    for a, b in zip(workers, alone):  # two processes of a thread each: the very same numbers, in input order
        assert a.error == b.error and a.energy == pytest.approx(b.energy, abs=1e-9)
    for a, b in zip(batched, alone):
        assert (a.error is None) == (b.error is None)
        if a.error is not None:
            assert a.error == b.error
            continue
        assert abs(a.energy - b.energy) < 1e-6
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)
        np.testing.assert_allclose(a.frequencies_cm1, b.frequencies_cm1, atol=0.5)
        assert abs(a.gibbs_ev - b.gibbs_ev) < 1e-4


@pytest.mark.parametrize("threads, inside", [(None, 1), (2, 2)])
def test_predict_sets_its_threads_only_while_it_works(monkeypatch, threads, inside):
    import gdlphys.predict

    seen = []

    def properties_of(*args, **kwargs):  # the real one, watched: relaxations and the Hessian run in it
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    real = gdlphys.predict.properties_of
    monkeypatch.setattr(gdlphys.predict, "properties_of", properties_of)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        (water,) = predict(["O"], "ethanol-xtb", conformers=1, progress=False, threads=threads, batch_size=1)
        assert water.error is None and seen == [inside]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_committee_preset_reports_its_spread_at_each_minimum():
    single, = predict(["CCO"], "ethanol-xtb", conformers=1, progress=False)
    committee, = predict(["CCO"], "ethanol-committee", conformers=1, progress=False)
    assert single.force_std is None and single.energy_std is None
    assert committee.error is None and committee.force_std > 0 and committee.energy_std >= 0
    atoms = committee.atoms()
    members = Path(__file__).resolve().parent.parent / "potentials" / "ethanol-xtb-committee"
    atoms.calc = GDLCalculator(["ethanol-xtb", members / "member-1.pt", members / "member-2.pt"], dtype="float64")
    atoms.get_forces()
    assert committee.force_std == pytest.approx(float(atoms.calc.results["forces_std"].max()), rel=1e-9)


def test_text_output_puts_the_reference_beside_the_potential(capsys):
    from gdlphys.cli import main

    assert main(["predict", "CCO", "--potential", "ethanol-xtb", "--conformers", "1", "--reference", "xtb"]) == 0
    out = capsys.readouterr().out
    header, *rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert "ethanol-xtb" in header and "GFN2-xTB" in header and "difference" in header
    energy = next(row for row in rows if row.strip().startswith("energy"))
    mine, xtb, diff = (float(x) for x in energy.split()[-3:])
    assert diff == pytest.approx(mine - xtb, abs=2e-4) and abs(diff) < 0.5  # both total energies in eV
    assert any(row.strip().startswith("dipole") for row in rows)

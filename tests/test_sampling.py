"""Where labelled frames come from: normal modes against ASE's vibrations, Boltzmann statistics of
the displacements, parallel labelling equal to serial, SMILES files with bad lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units

pytest.importorskip("tblite.ase")

from gdlphys.data import read_hdf5  # noqa: E402
from gdlphys.data.label import label_smiles, tblite_calculator  # noqa: E402
from gdlphys.molecules import read_smiles_file  # noqa: E402
from gdlphys.data.sampling import NormalModeSampling, harmonic_displacements, normal_modes  # noqa: E402
from gdlphys.molecules import smiles_to_atoms  # noqa: E402


def test_normal_modes_match_ase_vibrations(tmp_path: Path) -> None:
    from ase.vibrations import Vibrations

    sampler = NormalModeSampling(delta=0.01)
    water = smiles_to_atoms("O")[0]
    minimum, values, vectors, calls = sampler.modes(water, tblite_calculator())
    assert values.shape == (3,) and vectors.shape == (3, 9) and calls > 18
    relaxed = water.copy()
    relaxed.positions = minimum
    relaxed.calc = tblite_calculator()
    vib = Vibrations(relaxed, delta=0.01, name=str(tmp_path / "vib"))
    vib.run()
    reference = np.sort(vib.get_frequencies().real)[-3:]  # cm^-1, the three vibrations
    s = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
    ours = np.sort(s * np.sqrt(values) / units.invcm)
    assert np.allclose(ours, reference, atol=2.0)
    assert np.allclose(vectors @ vectors.T, np.eye(3), atol=1e-10)


def test_linear_molecule_keeps_four_vibrations() -> None:
    co2 = Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]])
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 9))
    _, vectors = normal_modes(co2, a + a.T)
    assert vectors.shape == (4, 9)  # 3N - 5


def test_displacements_follow_the_boltzmann_distribution() -> None:
    # mean harmonic energy 1/2 x^T H x of the drawn displacements is (n_modes / 2) kT
    atoms = smiles_to_atoms("CO")[0]
    rng = np.random.default_rng(1)
    n = 3 * len(atoms)
    a = rng.normal(size=(n, n))
    hessian = a @ a.T + 5.0 * np.eye(n)  # positive definite, eV/Å^2
    values, vectors = normal_modes(atoms, hessian)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(atoms.get_masses()), 3)
    weighted = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    back = np.repeat(np.sqrt(atoms.get_masses()), 3)
    projected = vectors.T @ np.diag(values) @ vectors  # the Hessian with rigid motions removed (mass-weighted)
    assert np.allclose(vectors @ weighted @ vectors.T, np.diag(values), atol=1e-8)
    temperature = 400.0
    shifts = harmonic_displacements(values, vectors, atoms.get_masses(), temperature, rng, 20000).reshape(20000, -1)
    q = shifts * back  # mass-weighted
    energy = 0.5 * np.einsum("ki,ij,kj->k", q, projected, q)
    expected = 0.5 * len(values) * units.kB * temperature
    assert energy.mean() == pytest.approx(expected, rel=0.03)
    capped = harmonic_displacements(values, vectors, atoms.get_masses(), 5000.0, rng, 50, max_displacement=0.1)
    assert np.linalg.norm(capped, axis=2).max() <= 0.1 + 1e-12


def test_normal_mode_frames_are_labelled_near_the_minimum(tmp_path: Path) -> None:
    out = tmp_path / "nm.h5"
    result = label_smiles(["CO"], out, sampling="normal-modes", temperature=[300.0, 600.0], frames=3, progress=False)
    frames = read_hdf5(out)
    assert result.n_frames == 6 and len(frames) == 6  # the minimum once, then 2 + 3 displaced
    assert np.abs(frames[0].get_forces()).max() < 0.02  # the relaxed minimum
    energies = np.array([f.get_potential_energy() for f in frames])
    assert np.all(energies[1:] > energies[0]) and np.all(energies[1:] - energies[0] < 1.0)
    fresh = frames[3].copy()
    fresh.calc = tblite_calculator()  # oracle: tblite itself on the stored geometry
    assert fresh.get_potential_energy() == pytest.approx(frames[3].get_potential_energy(), abs=1e-8)
    assert result.calls_per_frame is not None and result.calls_per_frame > 1


def test_parallel_labelling_equals_serial_in_input_order(tmp_path: Path) -> None:
    options = dict(sampling=["md", "normal-modes"], frames=2, stride=2, equilibration_steps=4, temperature=300.0,
                   progress=False)
    serial = label_smiles(["O", "CO", "C"], tmp_path / "serial.h5", **options)
    parallel = label_smiles(["O", "CO", "C"], tmp_path / "parallel.h5", workers=2, **options)
    assert serial.n_frames == parallel.n_frames == 12
    for a, b in zip(read_hdf5(serial.path), read_hdf5(parallel.path)):
        assert a.get_chemical_formula() == b.get_chemical_formula()
        assert np.allclose(a.positions, b.positions, atol=1e-10)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-8)


def test_smiles_file_skips_comments_and_reports_bad_lines(tmp_path: Path) -> None:
    smi = tmp_path / "molecules.smi"
    smi.write_text("# a comment\nO water\n\nnot-a-smiles\nC methane\n")
    assert read_smiles_file(smi) == ["O", "not-a-smiles", "C"]
    out = tmp_path / "out.h5"
    run = subprocess.run(
        [sys.executable, "-m", "gdlphys.cli", "data", "label", "--file", str(smi), "-o", str(out), "--frames", "2",
         "--stride", "2", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 1  # a failure is reported ...
    assert "'not-a-smiles' not labelled" in run.stderr
    assert len(read_hdf5(out)) == 4  # ... and the other molecules are written

"""Calculator presets: schema validation naming the field, committees, D3, skin, shipped presets, ASE plugin."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.md.verlet import VelocityVerlet
from ase import units

from gdlphys.calculator import GDLCalculator, UncertaintyExceeded
from gdlphys.models.files import save_potential
from gdlphys.presets import PresetError, load_calculator, preset_names, read_preset
from structures import random_crystal, random_molecule, tiny_potential


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("potentials")
    return [save_potential(tiny_potential(torch.float32, seed=s), folder / f"m{s}.pt") for s in range(3)]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, field, words",
    [
        ("potential: m0.pt\ndtpye: float64\n", "dtpye", "did you mean 'dtype'"),
        ("potential: m0.pt\ndtype: float16\n", "dtype", "float32, float64"),
        ("potential: m0.pt\nskin: -1\n", "skin", "[0, 3]"),
        ("potential: m0.pt\ndevice: tpu\n", "device", "cuda"),
        ("dtype: float64\n", "potential", "exactly one"),
        ("committee: {potentials: [m0.pt]}\n", "committee.potentials", "at least two"),
        ("committee: {potentials: [m0.pt, m1.pt], max_force_std: -2}\n", "committee.max_force_std", "positive"),
        ("committee: {potentials: [m0.pt, m1.pt], on_exced: stop}\n", "committee.on_exced", "on_exceed"),
        ("potential: m0.pt\ndispersion: {functional: PBE, damping: d5}\n", "dispersion.damping", "d3bj"),
        ("potential: m0.pt\nschema_version: 7\n", "schema_version", "schema"),
        ("- just\n- a list\n", "<top level>", "mapping"),
        ("potential: [unclosed\n", "<yaml>", "YAML"),
    ],
)
def test_malformed_presets_name_the_field(tmp_path, text, field, words):
    with pytest.raises(PresetError) as info:
        read_preset(_write(tmp_path, text))
    assert info.value.field == field and words in str(info.value) and "preset.yaml" in str(info.value)


def test_unknown_preset_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_calculator("no-such-preset")


def test_single_potential_preset_with_relative_path(tmp_path, members):
    path = tmp_path / "mine.yaml"
    path.write_text(f"potential: {members[0].name}\ndtype: float64\ndevice: cpu\n")
    (tmp_path / members[0].name).write_bytes(members[0].read_bytes())
    calc = load_calculator(path)
    assert calc.dtype == torch.float64 and len(calc.potentials) == 1
    atoms = random_molecule(5)
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


def test_committee_mean_and_spread(members):
    atoms = random_molecule(6, seed=2)
    singles = []
    for m in members:
        a = atoms.copy()
        a.calc = GDLCalculator(m, dtype="float64")
        singles.append((a.get_potential_energy(), a.get_forces()))
    atoms.calc = GDLCalculator(members, dtype="float64")
    energies = np.array([e for e, _ in singles])
    forces = np.array([f for _, f in singles])
    assert atoms.get_potential_energy() == pytest.approx(energies.mean(), abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), forces.mean(axis=0), atol=1e-9)
    assert atoms.calc.results["energy_std"] == pytest.approx(energies.std(), abs=1e-9)
    np.testing.assert_allclose(atoms.calc.get_property("forces_std", atoms), np.sqrt(forces.var(axis=0).sum(-1)), atol=1e-9)


def test_committee_threshold_warns_or_stops(members):
    atoms = random_molecule(6, seed=2)
    atoms.calc = GDLCalculator(members, max_force_std=1e-6, on_exceed="warn")
    with pytest.warns(UserWarning, match="force spread"):
        atoms.get_forces()
    atoms.calc = GDLCalculator(members, max_force_std=1e-6, on_exceed="stop")
    with pytest.raises(UncertaintyExceeded, match="max_force_std"):
        atoms.get_forces()


def test_dispersion_is_added(tmp_path, members):
    from dftd3.ase import DFTD3

    path = tmp_path / "d3.yaml"
    path.write_text(f"potential: {members[0]}\ndispersion: {{functional: PBE}}\n")
    atoms = random_crystal(3, seed=4, length=3.6)
    plain = atoms.copy()
    plain.calc = GDLCalculator(members[0], dtype="float64")
    d3 = atoms.copy()
    d3.calc = DFTD3(method="PBE", damping="d3bj")
    atoms.calc = load_calculator(path)
    assert atoms.get_potential_energy() == pytest.approx(plain.get_potential_energy() + d3.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(atoms.get_forces(), plain.get_forces() + d3.get_forces(), atol=1e-8)
    np.testing.assert_allclose(atoms.get_stress(), plain.get_stress() + d3.get_stress(), atol=1e-9)


def test_skin_changes_no_result_and_saves_searches(members):
    trajectories = {}
    for skin in (0.0, 1.0):
        atoms = random_molecule(8, seed=5)
        atoms.calc = GDLCalculator(members[0], dtype="float64", skin=skin)
        rng = np.random.default_rng(0)
        atoms.set_velocities(rng.normal(scale=0.02, size=(len(atoms), 3)))
        energies = []
        dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
        dyn.attach(lambda: energies.append(atoms.get_potential_energy()))
        dyn.run(40)
        trajectories[skin] = (np.array(energies), atoms.calc.neighbours.builds)
    np.testing.assert_allclose(trajectories[1.0][0], trajectories[0.0][0], atol=1e-10)
    assert trajectories[1.0][1] < trajectories[0.0][1] / 4


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_runs_short_md(name):
    from ase.io import read

    atoms = read(Path(__file__).resolve().parent.parent / "datasets" / "ethanol-xtb" / "ethanol.xyz")
    atoms.calc = load_calculator(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shipped committee must agree near equilibrium
        VelocityVerlet(atoms, timestep=0.5 * units.fs).run(10)
    assert np.isfinite(atoms.get_potential_energy())


def test_calculator_is_found_through_ase_plugins():
    plugins_module = pytest.importorskip("ase._4.plugins", reason="this ASE has no plugin system")
    found = [p for p in plugins_module.plugins if p.name == "gdlphys"]
    assert found, "gdlphys is not registered under the ase.plugins entry-point group (pip install -e .?)"
    assert found[0].implementation is GDLCalculator

"""Converting ase.io files (extxyz with custom keys) into the HDF5 format, exactly."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from gdlphys.data import DataFormatError, FrameReader, convert, read_hdf5


def custom_key_frames(n_frames: int = 4, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        n = 2 + k
        periodic = k % 2 == 1
        atoms = Atoms(
            numbers=rng.integers(1, 10, size=n),
            positions=rng.normal(size=(n, 3)) * 2,
            cell=np.eye(3) * 6.0 + rng.normal(size=(3, 3)) * 0.05 if periodic else None,
            pbc=periodic,
        )
        atoms.info["REF_energy"] = float(rng.normal() * 50)
        atoms.arrays["REF_forces"] = rng.normal(size=(n, 3))
        stress = rng.normal(size=(3, 3)) * 1e-2
        stress = stress + stress.T
        atoms.info["REF_stress"] = stress.reshape(9) if k % 2 else full_3x3_to_voigt_6_stress(stress)  # both forms
        atoms.info["REF_dipole"] = rng.normal(size=3)
        frames.append(atoms)
    return frames


KEYS = {"energy_key": "REF_energy", "forces_key": "REF_forces", "stress_key": "REF_stress", "dipole_key": "REF_dipole"}


def reference_stress(value) -> np.ndarray:
    value = np.asarray(value)
    return full_3x3_to_voigt_6_stress(value.reshape(3, 3)) if value.size == 9 else value


def test_extxyz_custom_keys_round_trip_exactly(tmp_path: Path) -> None:
    source = tmp_path / "train.extxyz"
    ase.io.write(source, custom_key_frames(), format="extxyz")
    expected = ase.io.read(source, index=":")
    output = tmp_path / "train.h5"
    assert convert([source], output, **KEYS) == len(expected)
    back = read_hdf5(output)
    assert len(back) == len(expected)
    for ref, got in zip(expected, back):
        assert np.array_equal(got.numbers, ref.numbers)
        assert np.array_equal(got.positions, ref.positions)
        assert np.array_equal(got.cell.array, ref.cell.array)
        assert np.array_equal(got.pbc, ref.pbc)
        assert got.get_potential_energy() == ref.info["REF_energy"]
        assert np.array_equal(got.get_forces(), ref.arrays["REF_forces"])
        assert np.array_equal(got.get_stress(), reference_stress(ref.info["REF_stress"]))
        assert np.array_equal(got.get_dipole_moment(), ref.info["REF_dipole"])
    attrs = FrameReader(output).attrs
    assert list(attrs["converted_from"]) == ["train.extxyz"]


def test_default_keys_take_calculator_results(tmp_path: Path) -> None:
    frames = []
    for k in range(3):
        atoms = Atoms("H2O", positions=np.random.default_rng(k).normal(size=(3, 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=-k - 0.125, forces=np.full((3, 3), 0.1 * k))
        frames.append(atoms)
    source = tmp_path / "plain.extxyz"
    ase.io.write(source, frames, format="extxyz")
    expected = ase.io.read(source, index=":")
    output = tmp_path / "plain.h5"
    convert([source, source], output, index="1:")
    back = read_hdf5(output)
    assert len(back) == 4
    for ref, got in zip(expected[1:] * 2, back):
        assert got.get_potential_energy() == ref.get_potential_energy()
        assert np.array_equal(got.get_forces(), ref.get_forces())
    assert FrameReader(output).fields == ("energy", "forces")


def test_missing_key_names_file_frame_and_key(tmp_path: Path) -> None:
    frames = custom_key_frames(3)
    del frames[2].info["REF_energy"]
    source = tmp_path / "broken.extxyz"
    ase.io.write(source, frames, format="extxyz")
    output = tmp_path / "out.h5"
    with pytest.raises(DataFormatError, match=r"broken\.extxyz: frame 2: energy key 'REF_energy' not found") as excinfo:
        convert([source], output, **KEYS)
    assert excinfo.value.path == source
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.extxyz"]


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.xyz"):
        convert([tmp_path / "nope.xyz"], tmp_path / "out.h5")

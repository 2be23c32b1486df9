"""Bad input through the command line: one clear line on stderr, a non-zero exit, nothing written."""

from __future__ import annotations

from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from gdlphys.cli import main
from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.models.files import save_potential
from structures import tiny_potential

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"


@pytest.fixture(scope="module")
def potential_file(tmp_path_factory) -> Path:
    return save_potential(tiny_potential(torch.float64), tmp_path_factory.mktemp("pot") / "potential.pt")


@pytest.fixture
def frames_file(tmp_path: Path) -> Path:
    path = tmp_path / "frames.h5"
    write_hdf5(path, read_hdf5(ETHANOL, index=slice(0, 8)), method="GFN2-xTB")
    return path


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error: " in err, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _newer(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99


def _no_positions(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["atoms/positions"]


def _short_forces(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["atoms/forces"].resize(5, axis=0)


def _hartree(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["units_energy"] = "Hartree"


BROKEN = {
    "truncated": (_truncate, "truncated or corrupt"),
    "newer": (_newer, "newer than this gdlphys supports"),
    "missing": (_no_positions, "/atoms/positions"),
    "lengths": (_short_forces, "/atoms/forces has shape"),
    "units": (_hartree, "Hartree"),
}


@pytest.mark.parametrize("damage", sorted(BROKEN))
def test_broken_hdf5_through_every_command(damage, frames_file, potential_file, tmp_path, capsys):
    edit, message = BROKEN[damage]
    edit(frames_file)
    capsys.readouterr()
    assert main(["data", "info", str(frames_file)]) == 1
    _one_line_error(capsys, str(frames_file), message)
    assert main(["eval", str(potential_file), str(frames_file)]) == 1
    _one_line_error(capsys, str(frames_file), message)
    run = tmp_path / "run"
    assert main(["train", "--train", str(frames_file), "-o", str(run), "--quiet", "true"]) == 1
    _one_line_error(capsys, str(frames_file), message)
    assert not run.exists()


def test_a_bad_frame_is_named_by_file_and_frame(tmp_path, potential_file, capsys):
    frames = read_hdf5(ETHANOL, index=slice(0, 4))
    bad = frames[2].copy()
    bad.positions[4] = bad.positions[1]
    bad.calc = SinglePointCalculator(bad, energy=frames[2].get_potential_energy(), forces=frames[2].get_forces())
    frames[2] = bad
    path = tmp_path / "coincident.h5"
    write_hdf5(path, frames)
    capsys.readouterr()
    assert main(["eval", str(potential_file), str(path)]) == 1
    _one_line_error(capsys, str(path), "frame 2", "atoms 1 and 4 sit at the same place")


def test_convert_without_the_requested_key(tmp_path, capsys):
    frames = read_hdf5(ETHANOL, index=slice(0, 3))
    for atoms in frames:
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.calc = None
    del frames[1].info["REF_energy"]
    source = tmp_path / "in.extxyz"
    ase.io.write(source, frames, format="extxyz")
    output = tmp_path / "out.h5"
    capsys.readouterr()
    assert main(["data", "convert", str(source), "-o", str(output), "--energy-key", "REF_energy"]) == 1
    _one_line_error(capsys, "in.extxyz", "frame 1", "REF_energy")
    assert not output.exists()


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms("CHO", positions=[[0, 0, 0], [1.1, 0, 0], [1.1, 0, 0]]), "atoms 1 and 2 sit at the same place"),
        (Atoms("CHO", positions=[[0, 0, 0], [1.1, 0, 0], [np.nan, 0, 0]]), "position of atom 2 (O) is not finite"),
        (Atoms("CHO", positions=[[0, 0, 0], [1.1, 0, 0], [np.inf, 0, 0]]), "position of atom 2 (O) is not finite"),
        (Atoms("CSi", positions=[[0, 0, 0], [1.9, 0, 0]]), "element(s) Si not supported"),
        (
            Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True),
            "degenerate (zero volume)",
        ),
    ],
    ids=["coincident", "nan", "inf", "unknown-element", "zero-volume"],
)
def test_md_on_bad_structures(atoms, message, potential_file, tmp_path, capsys):
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    traj = tmp_path / "md.traj"
    capsys.readouterr()
    assert main(["md", str(potential_file), str(path), "--steps", "3", "--json", "--traj", str(traj)]) == 1
    _one_line_error(capsys, message)


def test_md_on_a_single_atom_is_valid(potential_file, tmp_path, capsys):
    path = tmp_path / "atom.xyz"
    ase.io.write(path, Atoms("O"))
    assert main(["md", str(potential_file), str(path), "--steps", "3", "--json"]) == 0


@pytest.mark.parametrize(
    ("flags", "message", "code"),
    [
        (["--fit.lrr", "0.1"], "unrecognized arguments: --fit.lrr", 2),
        (["--model.num_features", "many"], "model.num_features", 2),
        (["--fit.lr=-1"], "fit.lr must be positive", 1),
        (["--fit.dtype", "float16"], "fit.dtype", 1),
        (["--model.cutoff", "0"], "model.cutoff must be positive", 1),
    ],
    ids=["unknown", "type", "negative-lr", "dtype", "cutoff"],
)
def test_bad_training_options_fail_before_anything_is_written(flags, message, code, frames_file, tmp_path, capsys):
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--train", str(frames_file), "-o", str(run), "--max-epochs", "1", *flags]) == code
    _one_line_error(capsys, message)
    assert not run.exists()

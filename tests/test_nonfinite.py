"""Non-finite numbers never reach a file or the optimiser: convert, the writer, labelling and training
name the file, frame, key and atom, and a diverging fit stops without writing a potential."""

from __future__ import annotations

import os
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from gdlphys.cli import main
from gdlphys.data import FrameWriter, format_info, info, read_hdf5, write_hdf5
from gdlphys.data.datamodule import GraphDataset
from gdlphys.data.finite import NonFiniteError, SkippedFrameWarning, file_nonfinite
from gdlphys.data.sampling import labelled_copy
from gdlphys.models.files import save_potential
from structures import tiny_potential

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"
TINY_CONFIG = """
model: {cutoff: 4.0, num_features: 8, l_max: 1, num_layers: 1, num_basis: 6, radial_hidden: 16, readout_hidden: 8}
fit: {batch_size: 4, valid_batch_size: 16, lr: 0.01, valid_fraction: 0.25}
trainer: {accelerator: cpu}
"""


def labelled(k: int, periodic: bool = True, **bad) -> Atoms:
    rng = np.random.default_rng(k)
    atoms = Atoms("CH4", positions=rng.normal(size=(5, 3)) * 1.5, cell=np.eye(3) * 8.0 if periodic else None, pbc=periodic)
    results = {"energy": float(rng.normal()), "forces": rng.normal(size=(5, 3)), "dipole": rng.normal(size=3)}
    if periodic:
        results["stress"] = rng.normal(size=6) * 1e-3
    results.update(bad)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def nan_at(shape: tuple[int, ...], index: tuple[int, ...], value: float = np.nan) -> np.ndarray:
    array = np.ones(shape)
    array[index] = value
    return array


# --------------------------------------------------------------------------- gdlphys data convert


@pytest.fixture
def extxyz_with_one_nan_force(tmp_path: Path) -> Path:
    frames = [labelled(k) for k in range(5)]
    frames[3].calc.results["forces"][2, 1] = np.nan
    source = tmp_path / "md.extxyz"
    ase.io.write(source, frames, format="extxyz")
    return source


def test_convert_refuses_a_nan_force_naming_input_frame_atom_and_key(extxyz_with_one_nan_force, tmp_path, capsys):
    output = tmp_path / "out.h5"
    assert main(["data", "convert", str(extxyz_with_one_nan_force), "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert f"{extxyz_with_one_nan_force}: frame 3: forces of atom 2 is not finite (nan)" in err
    assert "--skip-bad-frames" in err and err.count("\n") == 1  # one line, no traceback
    assert sorted(os.listdir(tmp_path)) == ["md.extxyz"]  # nothing written, not even a temporary file


def test_convert_skip_bad_frames_writes_the_rest_and_reports_each_skipped_one(extxyz_with_one_nan_force, tmp_path, capsys):
    output = tmp_path / "out.h5"
    assert main(["data", "convert", str(extxyz_with_one_nan_force), "-o", str(output), "--skip-bad-frames"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {extxyz_with_one_nan_force}: frame 3: forces of atom 2 is not finite (nan)" in err
    assert "skipped 1 frame(s)" in err and "wrote 4 frames" in err
    kept = read_hdf5(output)
    source = ase.io.read(extxyz_with_one_nan_force, ":")
    assert [a.get_potential_energy() for a in kept] == [source[k].get_potential_energy() for k in (0, 1, 2, 4)]
    assert file_nonfinite(output) == []


def test_convert_checks_positions_and_cell_too(tmp_path):
    frames = [labelled(k) for k in range(3)]
    frames[1].positions[4, 0] = np.inf
    source = tmp_path / "bad.extxyz"
    ase.io.write(source, frames, format="extxyz")
    from gdlphys.data import convert

    with pytest.raises(NonFiniteError, match=r"bad\.extxyz: frame 1: positions of atom 4 is not finite \(inf\)") as excinfo:
        convert(source, tmp_path / "out.h5")
    assert excinfo.value.path == source and excinfo.value.bad.atom == 4
    with pytest.warns(SkippedFrameWarning, match="frame 1: positions of atom 4"):
        assert convert(source, tmp_path / "out.h5", bad_frames="skip") == 2


# --------------------------------------------------------------------------- the HDF5 writer


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"energy": np.nan}, "frame 2: energy is not finite (nan)"),
        ({"energy": -np.inf}, "frame 2: energy is not finite (-inf)"),
        ({"stress": nan_at((6,), (4,))}, "frame 2: stress is not finite (nan)"),
        ({"dipole": nan_at((3,), (0,), np.inf)}, "frame 2: dipole is not finite (inf)"),
        ({"forces": nan_at((5, 3), (4, 2))}, "frame 2: forces of atom 4 is not finite (nan)"),
    ],
    ids=["nan-energy", "inf-energy", "nan-stress", "inf-dipole", "nan-force"],
)
def test_the_writer_refuses_a_non_finite_label_and_writes_nothing(tmp_path, bad, message):
    output = tmp_path / "out.h5"
    write_hdf5(output, [labelled(0)])
    before = output.read_bytes()
    with pytest.raises(ValueError) as excinfo:
        write_hdf5(output, [labelled(0), labelled(1), labelled(2, **bad), labelled(3)])
    assert str(excinfo.value).startswith(f"{output}: {message}")
    assert output.read_bytes() == before and os.listdir(tmp_path) == ["out.h5"]  # the old file, untouched


def test_the_writer_refuses_non_finite_positions_and_cells(tmp_path):
    atoms = labelled(0)
    cell = atoms.cell.array.copy()
    cell[1, 1] = np.nan
    atoms.set_cell(cell)
    atoms.calc = SinglePointCalculator(atoms, energy=1.0)
    with pytest.raises(ValueError, match="frame 0: cell is not finite"):
        write_hdf5(tmp_path / "out.h5", [atoms])
    atoms = Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]])
    with pytest.raises(ValueError, match="frame 0: positions of atom 1 is not finite"):
        write_hdf5(tmp_path / "out.h5", [atoms])
    assert os.listdir(tmp_path) == []


def test_the_writer_can_skip_bad_frames_and_records_each(tmp_path):
    output = tmp_path / "out.h5"
    frames = [labelled(0), labelled(1, energy=np.nan), labelled(2), labelled(3, forces=nan_at((5, 3), (1, 0)))]
    with pytest.warns(SkippedFrameWarning) as warned, FrameWriter(output, bad_frames="skip") as writer:
        writer.extend(frames)
    assert [(b.frame, b.key, b.atom) for b in writer.skipped] == [(1, "energy", None), (3, "forces", 1)]
    assert [str(w.message) for w in warned] == [
        f"skipped {output}: frame 1: energy is not finite (nan)",
        f"skipped {output}: frame 3: forces of atom 1 is not finite (nan)",
    ]
    assert [a.get_potential_energy() for a in read_hdf5(output)] == [frames[0].get_potential_energy(), frames[2].get_potential_energy()]
    with pytest.raises(ValueError, match="bad_frames must be one of"):
        FrameWriter(tmp_path / "other.h5", bad_frames="ignore")


def test_missing_labels_are_stored_as_nan_and_are_not_bad(tmp_path):
    output = tmp_path / "partial.h5"
    unlabelled = labelled(1, periodic=False)
    unlabelled.calc = SinglePointCalculator(unlabelled, energy=2.0)  # no forces, dipole: NaN under a False mask
    write_hdf5(output, [labelled(0, periodic=False), unlabelled])
    assert file_nonfinite(output) == []
    assert len(GraphDataset(output, cutoff=3.0)) == 2


# --------------------------------------------------------------------------- labelling


def test_a_calculator_giving_nan_fails_the_label_naming_the_key():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    failed = SinglePointCalculator(atoms, energy=np.nan, forces=np.zeros((3, 3)), dipole=np.zeros(3))
    with pytest.raises(ValueError, match="non-finite label: energy is not finite"):
        labelled_copy(atoms, failed)
    failed = SinglePointCalculator(atoms, energy=-1.0, forces=nan_at((3, 3), (2, 2)), dipole=np.zeros(3))
    with pytest.raises(ValueError, match="forces of atom 2 is not finite"):
        labelled_copy(atoms, failed)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture
def small_set(tmp_path) -> Path:
    path = tmp_path / "small.h5"
    write_hdf5(path, read_hdf5(ETHANOL, index=slice(0, 12)), method="GFN2-xTB")
    return path


def test_an_old_file_with_a_nan_label_fails_before_training(small_set, config, tmp_path, capsys):
    with h5py.File(small_set, "r+") as f:  # as an older gdlphys could write it, past the writer's check
        offsets = f["frames/offsets"][()]
        forces = f["atoms/forces"]
        forces[offsets[7] + 3, 1] = np.nan
    run = tmp_path / "run"
    args = ["train", "--train", str(small_set), "--config", str(config), "--max-epochs", "1", "--quiet", "true"]
    assert main(args + ["-o", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"{small_set}: frame 7: forces of atom 3 is not finite (nan)" in err and err.count("\n") == 1
    assert not (run / "potential.pt").exists() and not (run / "checkpoints").exists()
    summary = info(small_set)
    assert summary["non_finite"] == {"frames": 1, "first": 7, "what": "forces of atom 3 is not finite (nan)"}
    assert "non-finite  1 frames; first: frame 7: forces of atom 3" in format_info(summary)


def test_a_diverging_fit_stops_with_a_named_error_and_writes_no_potential(small_set, config, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--train", str(small_set), "--config", str(config), "--max-epochs", "2", "--quiet", "true"]
    # an absurd learning rate: the first Adam step moves every weight by ~1e30, the next forward overflows float32
    assert main(args + ["--fit.lr", "1e30", "-o", str(run)]) == 1
    err = capsys.readouterr().err
    assert "gdlphys: error: non-finite training loss at epoch 0, step 1: " in err
    assert "term is" in err and "fit.lr" in err
    assert not (run / "potential.pt").exists()


def test_a_potential_with_non_finite_weights_is_never_written(tmp_path):
    potential = tiny_potential()
    with torch.no_grad():
        next(potential.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(FloatingPointError, match="potential.pt not written: the potential's weights .* are not finite"):
        save_potential(potential, tmp_path / "run" / "potential.pt")
    assert not (tmp_path / "run").exists()

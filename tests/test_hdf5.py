"""The HDF5 frame format: bit-exact round trips, random access, clear errors, atomic writes."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdlphys.data import DataFormatError, FrameReader, FrameWriter, format_info, info, read_hdf5, write_hdf5
from gdlphys.io_utils import atomic_write

REPO = Path(__file__).resolve().parents[1]


ALL_LABELS = ("energy", "forces", "stress", "dipole")


def make_frame(rng: np.random.Generator, n: int, *, periodic: bool, labels: tuple[str, ...] = ALL_LABELS) -> Atoms:
    atoms = Atoms(
        numbers=rng.integers(1, 60, size=n),
        positions=rng.normal(size=(n, 3)) * 3.0,
        cell=np.diag(rng.uniform(5, 9, size=3)) + rng.normal(size=(3, 3)) * 0.1 if periodic else None,
        pbc=periodic,
    )
    results = {
        "energy": float(rng.normal() * 100),
        "forces": rng.normal(size=(n, 3)),
        "stress": rng.normal(size=6) * 1e-3,
        "dipole": rng.normal(size=3),
    }
    atoms.calc = SinglePointCalculator(atoms, **{k: v for k, v in results.items() if k in labels})
    return atoms


def assert_same_frames(written: list[Atoms], read: list[Atoms]) -> None:
    assert len(written) == len(read)
    for a, b in zip(written, read):
        assert np.array_equal(a.numbers, b.numbers)
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell.array, b.cell.array)
        assert np.array_equal(a.pbc, b.pbc)
        expected = a.calc.results if a.calc is not None else {}
        got = b.calc.results if b.calc is not None else {}
        assert set(expected) == set(got)
        for key in expected:
            assert np.asarray(got[key]).tobytes() == np.asarray(expected[key]).tobytes(), key
        if "energy" in expected:
            assert b.get_potential_energy() == a.get_potential_energy()
        if "forces" in expected:
            assert np.array_equal(b.get_forces(), a.get_forces())
        if "stress" in expected:
            assert np.array_equal(b.get_stress(), a.get_stress())
        if "dipole" in expected:
            assert np.array_equal(b.get_dipole_moment(), a.get_dipole_moment())


@pytest.fixture
def frames() -> list[Atoms]:
    rng = np.random.default_rng(7)
    return [make_frame(rng, n, periodic=bool(i % 2)) for i, n in enumerate([1, 5, 3, 12, 2, 7])]


def test_round_trip_is_bit_exact(tmp_path: Path, frames: list[Atoms]) -> None:
    path = tmp_path / "frames.h5"
    assert write_hdf5(path, frames, method="test", software="pytest", attrs={"note": "hi"}) == len(frames)
    assert_same_frames(frames, read_hdf5(path))
    reader = FrameReader(path)
    assert reader.attrs["method"] == "test" and reader.attrs["software"] == "pytest" and reader.attrs["note"] == "hi"
    assert reader.attrs["units_energy"] == "eV" and reader.attrs["format_version"] == 1
    assert set(reader.fields) == {"energy", "forces", "stress", "dipole"}


def test_random_access_reads_one_frame(tmp_path: Path, frames: list[Atoms]) -> None:
    path = tmp_path / "frames.h5"
    write_hdf5(path, frames)
    reader = FrameReader(path)
    assert len(reader) == len(frames)
    assert reader.num_atoms.tolist() == [len(a) for a in frames]
    for k in (3, 0, -1):
        frame, atoms = reader[k], frames[k]
        assert frame["numbers"].dtype == np.int64
        assert np.array_equal(frame["positions"], atoms.positions)
        assert np.array_equal(frame["forces"], atoms.calc.results["forces"])
        assert frame["energy"] == atoms.calc.results["energy"]
        assert np.array_equal(frame["stress"], atoms.calc.results["stress"])
    with pytest.raises(IndexError):
        reader[len(frames)]
    assert_same_frames([frames[4], frames[1]], read_hdf5(path, index=[4, 1]))
    assert_same_frames(frames[::2], read_hdf5(path, index="::2"))
    assert_same_frames([frames[-1]], read_hdf5(path, index=-1))


def test_reader_pickles_without_its_handle(tmp_path: Path, frames: list[Atoms]) -> None:
    path = tmp_path / "frames.h5"
    write_hdf5(path, frames)
    reader = FrameReader(path)
    reader[2]  # opens the handle
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._file is None
    assert np.array_equal(clone[2]["positions"], frames[2].positions)
    reader.close()


def test_partial_labels_use_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [
        make_frame(rng, 3, periodic=False, labels=("energy",)),
        make_frame(rng, 4, periodic=True, labels=("energy", "forces", "stress")),
        Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),
        make_frame(rng, 2, periodic=False, labels=("dipole",)),
    ]
    path = tmp_path / "partial.h5"
    write_hdf5(path, frames)
    assert_same_frames(frames, read_hdf5(path))
    reader = FrameReader(path)
    assert "forces" not in reader[0] and "forces" in reader[1] and "energy" not in reader[2]
    assert reader.has("dipole", 3) and not reader.has("dipole", 0)
    with h5py.File(path) as f:
        assert f["frames/has_energy"][()].tolist() == [True, True, False, False]


def test_streaming_writer_appends_and_resumes(tmp_path: Path, frames: list[Atoms]) -> None:
    path = tmp_path / "stream.h5"
    with FrameWriter(path, method="m", buffer_frames=2) as writer:
        writer.extend(frames[:3])
        assert not path.exists()  # appears only at close
    with FrameWriter(path, append=True, method="m") as writer:
        writer.extend(frames[3:])
    assert_same_frames(frames, read_hdf5(path))
    with pytest.raises(ValueError, match="method"):
        FrameWriter(path, append=True, method="other")
    assert sorted(os.listdir(tmp_path)) == ["stream.h5"]


def test_full_stress_is_stored_in_voigt_form(tmp_path: Path) -> None:
    atoms = Atoms("Ar", cell=np.eye(3) * 4, pbc=True)
    full = np.array([[1.0, 0.4, 0.5], [0.4, 2.0, 0.6], [0.5, 0.6, 3.0]]) * 1e-3
    atoms.calc = SinglePointCalculator(atoms, stress=full)
    write_hdf5(tmp_path / "s.h5", [atoms])
    assert np.array_equal(FrameReader(tmp_path / "s.h5")[0]["stress"], atoms.get_stress())
    assert np.array_equal(read_hdf5(tmp_path / "s.h5")[0].get_stress(voigt=False), full)


def test_smiles_and_empty_file(tmp_path: Path, frames: list[Atoms]) -> None:
    frames[1].info["smiles"] = "CCO"
    write_hdf5(tmp_path / "s.h5", frames)
    back = read_hdf5(tmp_path / "s.h5")
    assert back[1].info["smiles"] == "CCO" and "smiles" not in back[0].info
    assert FrameReader(tmp_path / "s.h5").smiles(1) == "CCO"
    assert write_hdf5(tmp_path / "empty.h5", []) == 0
    assert read_hdf5(tmp_path / "empty.h5") == []


def test_info_summary(tmp_path: Path, frames: list[Atoms]) -> None:
    path = tmp_path / "frames.h5"
    write_hdf5(path, frames, method="GFN2-xTB", software="tblite 0.4.0")
    summary = info(path)
    assert summary["n_frames"] == len(frames)
    assert summary["n_atoms"]["max"] == 12 and summary["n_atoms"]["min"] == 1
    assert sum(summary["elements"].values()) == sum(len(a) for a in frames)
    energies = [a.get_potential_energy() for a in frames]
    assert summary["energy"]["min"] == min(energies)
    forces = np.concatenate([a.get_forces() for a in frames])
    assert summary["forces_rms"] == pytest.approx(np.sqrt(np.mean(forces**2)))
    assert summary["provenance"]["method"] == "GFN2-xTB"
    text = format_info(summary)
    assert "GFN2-xTB" in text and "frames      6" in text


# ----------------------------------------------------------------------------- errors


@pytest.fixture
def good_file(tmp_path: Path, frames: list[Atoms]) -> Path:
    path = tmp_path / "good.h5"
    write_hdf5(path, frames)
    return path


def test_truncated_file_is_a_clear_error(good_file: Path) -> None:
    data = good_file.read_bytes()
    good_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="good.h5.*truncated or corrupt"):
        read_hdf5(good_file)


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    path.write_text("energy=1.0\n")
    with pytest.raises(DataFormatError, match="x.h5"):
        FrameReader(path)
    with pytest.raises(FileNotFoundError):
        FrameReader(tmp_path / "missing.h5")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.attrs.__setitem__("format_version", 2), "newer than this gdlphys supports"),
        (lambda f: f.attrs.__setitem__("format", "something-else"), "not a gdlphys-frames file"),
        (lambda f: f.attrs.__setitem__("units_energy", "Hartree"), "units_energy is 'Hartree'"),
        (lambda f: f.attrs.__setitem__("units_energy", "kcal/mol"), "units_energy is 'kcal/mol'"),
        (lambda f: f.attrs.__delitem__("units_length"), "missing units_length"),
        (lambda f: f.__delitem__("atoms/positions"), "missing required dataset /atoms/positions"),
        (lambda f: f["atoms/forces"].resize(3, axis=0), "/atoms/forces has shape"),
        (lambda f: f["atoms/numbers"].resize(3, axis=0), "offsets ends at"),
        (lambda f: f["frames/offsets"].__setitem__(2, 100), "non-decreasing"),
        (lambda f: f["frames/energy"].resize(2, axis=0), "/frames/energy has shape"),
    ],
    ids=["version", "format", "hartree", "kcal", "no-units", "missing", "forces", "atoms", "offsets", "energy"],
)
def test_format_errors(good_file: Path, edit, message: str) -> None:
    with h5py.File(good_file, "r+") as f:
        edit(f)
    with pytest.raises(DataFormatError, match=message) as excinfo:
        read_hdf5(good_file)
    assert str(good_file) in str(excinfo.value)


def test_bad_frames_are_rejected(tmp_path: Path) -> None:
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"frame 1: forces has shape \(3, 3\), expected \(2, 3\)"):
        write_hdf5(tmp_path / "bad.h5", [Atoms("H"), atoms])
    assert os.listdir(tmp_path) == []
    atoms = make_frame(np.random.default_rng(0), 3, periodic=False)
    atoms.positions += 0.1  # after the labels were computed
    with pytest.raises(ValueError, match="frame 0: the calculator's results are stale"):
        write_hdf5(tmp_path / "bad.h5", [atoms])
    with pytest.raises(ValueError, match="reserved"):
        write_hdf5(tmp_path / "bad.h5", [], attrs={"format_version": 3})


# ----------------------------------------------------------------------------- atomicity


def test_exception_inside_writer_keeps_old_file(good_file: Path, frames: list[Atoms]) -> None:
    before = good_file.read_bytes()

    def exploding():
        yield frames[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_hdf5(good_file, exploding())
    assert good_file.read_bytes() == before
    assert os.listdir(good_file.parent) == [good_file.name]

    with pytest.raises(KeyError):
        with atomic_write(good_file) as tmp:
            tmp.write_text("partial")
            raise KeyError("x")
    assert good_file.read_bytes() == before
    assert os.listdir(good_file.parent) == [good_file.name]


def test_sigkill_mid_write_never_corrupts(good_file: Path, frames: list[Atoms]) -> None:
    before = good_file.read_bytes()
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from gdlphys.data import FrameWriter
        rng = np.random.default_rng(0)
        with FrameWriter({str(good_file)!r}, buffer_frames=50) as writer:
            for i in range(10**7):
                atoms = Atoms(numbers=np.ones(50, int), positions=rng.normal(size=(50, 3)))
                atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=rng.normal(size=(50, 3)))
                writer.append(atoms)
                if i == 500:
                    print("writing", flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"writing"
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert good_file.read_bytes() == before
    assert_same_frames(frames, read_hdf5(good_file))
    leftovers = [p for p in os.listdir(good_file.parent) if p != good_file.name]
    assert all(p.startswith(f".{good_file.name}.tmp-") for p in leftovers)


# ----------------------------------------------------------------------------- property


@st.composite
def frame_lists(draw) -> list[Atoms]:
    n_frames = draw(st.integers(0, 5))
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    out = []
    for _ in range(n_frames):
        n = draw(st.integers(0, 6))
        periodic = draw(st.booleans())
        atoms = Atoms(
            numbers=draw(st.lists(st.integers(1, 118), min_size=n, max_size=n)),
            positions=np.array(draw(st.lists(floats, min_size=3 * n, max_size=3 * n))).reshape(n, 3),
            cell=np.array(draw(st.lists(floats, min_size=9, max_size=9))).reshape(3, 3) if periodic else None,
            pbc=periodic,
        )
        results = {}
        if draw(st.booleans()):
            results["energy"] = draw(floats)
        if draw(st.booleans()):
            results["forces"] = np.array(draw(st.lists(floats, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
        if draw(st.booleans()):
            results["stress"] = np.array(draw(st.lists(floats, min_size=6, max_size=6)))
        if draw(st.booleans()):
            results["dipole"] = np.array(draw(st.lists(floats, min_size=3, max_size=3)))
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=frame_lists())
def test_round_trip_property(tmp_path: Path, frames: list[Atoms]) -> None:
    path = tmp_path / "prop.h5"
    write_hdf5(path, frames)
    assert_same_frames(frames, read_hdf5(path))
    reader = FrameReader(path)
    for k in range(len(frames)):
        assert np.array_equal(reader[k]["positions"], frames[k].positions)

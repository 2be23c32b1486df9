"""Labelling with GFN2-xTB: frames match tblite itself, failures are reported, reruns resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tblite.ase")

from gdlphys.data import FrameReader, read_hdf5  # noqa: E402
from gdlphys.data import label as label_module  # noqa: E402
from gdlphys.data.label import label_atoms, label_smiles, tblite_calculator  # noqa: E402
from gdlphys.molecules import parse_smiles, smiles_to_atoms  # noqa: E402

FAST = {"frames": 3, "stride": 2, "equilibration_steps": 4, "temperature": 300.0, "progress": False}


def test_smiles_to_atoms_is_seeded_and_has_hydrogens() -> None:
    first = smiles_to_atoms("CO", n_conformers=2, seed=3)
    again = smiles_to_atoms("CO", n_conformers=2, seed=3)
    assert len(first) == 2
    assert first[0].get_chemical_formula() == "CH4O"
    assert first[0].info["smiles"] == "CO"
    assert np.array_equal(first[1].positions, again[1].positions)


@pytest.mark.parametrize(
    ("smiles", "message"),
    [
        ("C1CC", "cannot parse"),
        ("C(C)(C)(C)(C)C", "valence"),
        ("", "empty"),
        ("CC.O", "2 disconnected fragments"),
        ("[Na+].[Cl-]", "disconnected fragments"),
        ("C[NH3+]", "net formal charge \\+1"),
        ("[CH3]", "unpaired electron"),
    ],
)
def test_parse_smiles_errors_are_distinct(smiles: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as excinfo:
        parse_smiles(smiles)
    assert repr(smiles) in str(excinfo.value)


def test_label_atoms_matches_tblite() -> None:
    atoms = smiles_to_atoms("O")[0]
    labelled = label_atoms(atoms)
    reference = atoms.copy()
    reference.calc = tblite_calculator("GFN2-xTB")
    assert labelled.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-8)
    assert np.allclose(labelled.get_forces(), reference.get_forces(), atol=1e-8)
    assert np.allclose(labelled.get_dipole_moment(), reference.get_dipole_moment(), atol=1e-8)


def test_label_smiles_frames_match_tblite_and_report_failures(tmp_path: Path) -> None:
    output = tmp_path / "water.h5"
    result = label_smiles(["O", "not-a-smiles", "C"], output, **FAST)
    assert Path(result) == output and output.exists()
    assert result.n_frames == 6 and result.n_molecules == 2
    assert [smiles for smiles, _ in result.failures] == ["not-a-smiles"]
    assert "cannot parse" in result.failures[0].reason
    reader = FrameReader(output)
    assert set(reader.fields) == {"energy", "forces", "dipole"}
    assert reader.attrs["method"] == "GFN2-xTB" and reader.attrs["software"].startswith("tblite ")
    assert [reader.smiles(k) for k in range(len(reader))] == ["O"] * 3 + ["C"] * 3
    frames = read_hdf5(output)
    assert len({f.positions.tobytes() for f in frames[:3]}) == 3  # MD moved the atoms
    for frame in (frames[0], frames[5]):  # oracle: tblite on the stored positions
        fresh = frame.copy()
        fresh.calc = tblite_calculator()
        assert fresh.get_potential_energy() == pytest.approx(frame.get_potential_energy(), abs=1e-9)
        assert np.allclose(fresh.get_forces(), frame.get_forces(), atol=1e-9)
        assert np.allclose(fresh.get_dipole_moment(), frame.get_dipole_moment(), atol=1e-9)
    # failures keep the partial files so a fixed rerun is cheap
    assert (tmp_path / "water.h5.partial").is_dir()


def test_rerun_resumes_without_relabelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "mols.h5"
    calls: list[str] = []
    real_run_md = label_module._sample_molecule

    def counting_run_md(smiles: str, **kwargs):
        calls.append(smiles)
        if smiles == "C" and len(calls) == 2:
            raise KeyboardInterrupt  # a kill after the first molecule
        return real_run_md(smiles, **kwargs)

    monkeypatch.setattr(label_module, "_sample_molecule", counting_run_md)
    with pytest.raises(KeyboardInterrupt):
        label_smiles(["O", "C"], output, **FAST)
    assert not output.exists()
    assert len(list((tmp_path / "mols.h5.partial").glob("*.h5"))) == 1

    calls.clear()
    result = label_smiles(["O", "C"], output, **FAST)
    assert calls == ["C"]  # water was not relabelled
    assert result.n_frames == 6 and not result.failures
    assert not (tmp_path / "mols.h5.partial").exists()

    fresh = tmp_path / "fresh.h5"
    monkeypatch.setattr(label_module, "_sample_molecule", real_run_md)
    label_smiles(["O", "C"], fresh, **FAST)
    for resumed, direct in zip(read_hdf5(output), read_hdf5(fresh)):  # same seeds, same frames
        assert np.allclose(resumed.positions, direct.positions, atol=1e-8)
        assert resumed.get_potential_energy() == pytest.approx(direct.get_potential_energy(), abs=1e-6)

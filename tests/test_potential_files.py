"""Potential files that must be refused with the reason: corrupt, truncated, newer, foreign, unsafe."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from gdlphys import keys
from gdlphys.cli import main
from gdlphys.models.files import FORMAT_VERSION, PotentialFileError, load_potential, potential_to_dict, save_potential
from structures import graph_of, random_molecule, tiny_potential


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_potential(tiny_potential(torch.float64), tmp_path / "potential.pt")


class Payload:
    """Runs code when unpickled: the very thing weights_only loading exists to refuse."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _refused(path: Path, match: str, capsys) -> None:
    with pytest.raises(PotentialFileError, match=match):
        load_potential(path)
    capsys.readouterr()
    assert main(["eval", str(path), str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gdlphys: error: ") and len(err.splitlines()) == 1 and str(path) in err, err


def test_round_trip(saved: Path) -> None:
    data = graph_of(random_molecule(6, seed=1), 3.5)
    original = tiny_potential(torch.float64)
    assert torch.equal(load_potential(saved)(data)[keys.ENERGY], original(data)[keys.ENERGY])


def test_truncated_and_corrupt_files(saved: Path, capsys) -> None:
    blob = saved.read_bytes()
    truncated = saved.with_name("truncated.pt")
    truncated.write_bytes(blob[: len(blob) // 2])
    _refused(truncated, "truncated or corrupt", capsys)
    flipped = bytearray(blob)
    # zero bytes of the pickled record: zeroed raw tensor bytes would load (the zip records carry no
    # checksum torch verifies), so a fixed fraction of the file tested whatever the layout put there
    start = blob.index(b"data.pkl") + 100
    flipped[start : start + 64] = bytes(64)
    corrupt = saved.with_name("corrupt.pt")
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(PotentialFileError):
        load_potential(corrupt)
    text = saved.with_name("notes.pt")
    text.write_text("not a potential\n")
    _refused(text, "truncated or corrupt", capsys)
    empty = saved.with_name("empty.pt")
    empty.write_bytes(b"")
    _refused(empty, "truncated or corrupt", capsys)


def test_newer_version_and_foreign_files(saved: Path, tmp_path: Path, capsys) -> None:
    blob = potential_to_dict(tiny_potential())
    blob["format_version"] = FORMAT_VERSION + 1
    torch.save(blob, tmp_path / "newer.pt")
    _refused(tmp_path / "newer.pt", f"format version {FORMAT_VERSION + 1}.*upgrade gdlphys", capsys)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    _refused(tmp_path / "foreign.pt", "not a gdlphys potential file", capsys)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "state.pt")
    _refused(tmp_path / "state.pt", "not a gdlphys potential file", capsys)
    blob = potential_to_dict(tiny_potential())
    del blob["state_dict"]
    torch.save(blob, tmp_path / "no-weights.pt")
    _refused(tmp_path / "no-weights.pt", "damaged or inconsistent: missing field 'state_dict'", capsys)
    blob = potential_to_dict(tiny_potential())
    blob["species"] = [1, 6]  # weights for four species
    torch.save(blob, tmp_path / "inconsistent.pt")
    _refused(tmp_path / "inconsistent.pt", "damaged or inconsistent", capsys)
    blob = potential_to_dict(tiny_potential())
    blob["units"] = {"energy": "Hartree", "length": "Bohr"}
    torch.save(blob, tmp_path / "hartree.pt")
    _refused(tmp_path / "hartree.pt", "Hartree", capsys)


@pytest.mark.parametrize("payload", [Payload(), print, np.float64], ids=["reduce", "function", "class"])
def test_files_that_need_unpickling_code_are_refused(tmp_path: Path, monkeypatch, payload, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    blob = potential_to_dict(tiny_potential())
    blob["metadata"] = {"extra": payload}
    torch.save(blob, tmp_path / "unsafe.pt")
    _refused(tmp_path / "unsafe.pt", "refused: it holds .*would run arbitrary code", capsys)
    assert not (tmp_path / "pwned").exists()


def test_a_lightning_checkpoint_is_named_as_such(tmp_path: Path, capsys) -> None:
    torch.save({"pytorch-lightning_version": "2.5", "state_dict": {}}, tmp_path / "last.ckpt")
    _refused(tmp_path / "last.ckpt", "Lightning training checkpoint", capsys)


def test_version_1_files_keep_their_energies(tmp_path: Path) -> None:
    """A version-1 file (isolated atoms at E0 + a learnt constant) loads with every energy unchanged."""
    old = tiny_potential(torch.float64)
    blob = potential_to_dict(old)
    blob["format_version"] = 1
    torch.save(blob, tmp_path / "v1.pt")
    migrated = load_potential(tmp_path / "v1.pt")
    model = old.model
    structures = [random_molecule(7, seed=2), Atoms("O"), random_molecule(4, seed=3)]
    for atoms in structures:
        data = graph_of(atoms, old.cutoff)
        species = old.species_index(data[keys.ATOMIC_NUMBERS])
        version_1 = model.network_forward(dict(data, **{keys.SPECIES: species}))[keys.ATOMIC_ENERGIES]
        out = migrated(data)
        torch.testing.assert_close(out[keys.ATOMIC_ENERGIES], version_1, rtol=0, atol=1e-9)
        torch.testing.assert_close(out[keys.FORCES], old(data)[keys.FORCES], rtol=0, atol=1e-12)
    save_potential(migrated, tmp_path / "v2.pt")
    again = load_potential(tmp_path / "v2.pt")
    data = graph_of(structures[0], old.cutoff)
    assert torch.equal(again(data)[keys.ENERGY], migrated(data)[keys.ENERGY])

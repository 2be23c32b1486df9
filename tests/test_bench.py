"""`gdlphys bench`: tables, reports, structures and the neighbour benchmark at tiny sizes.

The MACE side needs the peer environment (`make bench-env`); its tests skip without it.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from gdlphys.bench import neighbours
from gdlphys.bench.peers import DEFAULT_PEER_PYTHON, PEER_SCRIPTS
from gdlphys.bench.report import Table, bar_panels, line_panels, write_report
from gdlphys.bench.systems import (
    aspirin_molecule,
    aspirin_split,
    dataset_split,
    export_extxyz,
    molecule_box,
    random_atoms,
)
from gdlphys.cli import main

needs_peers = pytest.mark.skipif(not DEFAULT_PEER_PYTHON.is_file(), reason="no peer venv (make bench-env)")


def test_table_ratio_winner_and_json():
    table = Table("t", ["gdlphys", "MACE"])
    table.add("force MAE", "meV/Å", {"gdlphys": 20.0, "MACE": 40.0})
    table.add("speed", "steps/s", {"gdlphys": 10.0, "MACE": 5.0}, better="higher")
    table.add("missing", "s", {"gdlphys": 1.0, "MACE": None})
    text = table.render()
    lines = text.splitlines()
    assert "gdlphys/MACE" in lines[1]
    force, speed, missing = lines[3:6]
    assert force.split()[-2:] == ["0.500", "gdlphys"]
    assert speed.split()[-2:] == ["2.00", "gdlphys"]
    assert missing.split()[-1] == "-"
    rows = table.to_dict()["rows"]
    assert [r["ratio"] for r in rows] == [0.5, 2.0, None]


def test_report_files(tmp_path):
    table = Table("t", ["gdlphys", "MACE"])
    table.add("x", "s", {"gdlphys": 1.0, "MACE": 2.0})
    path = write_report(tmp_path, "demo", [table], {"raw": [1, 2]}, {"quick": True})
    document = json.loads(path.read_text())
    assert document["benchmark"] == "demo" and document["tables"][0]["rows"][0]["ratio"] == 0.5
    assert "torch" in document["environment"]
    bar_panels(tmp_path / "bars.png", "bars", [("x", {"gdlphys": 1.0, "MACE": None})])
    line_panels(tmp_path / "lines.png", "lines", [("p", "atoms", "s", {"gdlphys": [(10, 0.1), (80, 0.5)]})])
    for name in ("bars.png", "lines.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_aspirin_dataset_and_extxyz(tmp_path):
    import ase.io

    from gdlphys.data import FrameReader

    split = aspirin_split()
    assert [len(FrameReader(p)) for p in (split.train, split.valid, split.test)] == [950, 50, 200]
    n = export_extxyz(split.valid, tmp_path / "valid.xyz")
    frames = ase.io.read(tmp_path / "valid.xyz", index=":")
    reader = FrameReader(split.valid)
    assert n == len(frames) == 50
    assert frames[3].info["REF_energy"] == pytest.approx(float(reader[3]["energy"]), abs=1e-8)
    np.testing.assert_allclose(frames[3].arrays["REF_forces"], reader[3]["forces"], atol=1e-7)


def test_molecule_box_has_no_overlaps():
    from ase.neighborlist import neighbor_list

    molecule = aspirin_molecule()
    assert len(molecule) == 21 and not molecule.pbc.any()
    box = molecule_box(molecule, (2, 2, 2))
    assert len(box) == 168 and box.pbc.all()
    i, _ = neighbor_list("ij", box, 0.8)  # C-H bonds are ~1.1 Å; nothing closer between copies
    assert len(i) == 0


def test_random_atoms_at_water_density():
    positions, cell = random_atoms(1000, seed=0)
    assert positions.shape == (1000, 3)
    assert 1000 / np.linalg.det(cell) == pytest.approx(0.1003, rel=1e-6)
    assert (positions >= 0).all() and (positions < cell[0, 0]).all()


def test_gdlphys_neighbour_timings_match_ase_pairs():
    from ase.neighborlist import primitive_neighbor_list

    structures = {n: random_atoms(n, seed=1) for n in (50, 400)}
    rows = neighbours.measure_gdlphys(structures, max_seconds=10.0, repeats=1)
    assert len(rows) == 4 and all(r["seconds"] > 0 for r in rows)
    for r in rows:
        positions, cell = structures[r["n_atoms"]]
        i, _ = primitive_neighbor_list("ij", [r["periodic"]] * 3, cell, positions, neighbours.CUTOFF)
        assert r["pairs"] == len(i)
    tables = [neighbours.time_table(rows, [50, 400]), neighbours.scaling_table(rows, [50, 400])]
    assert "gdlphys/vesin" in tables[0].render()
    assert len(tables[1].rows) == 2  # 400 = 8 x 50, periodic and open


def test_pair_count_mismatch_is_an_error():
    rows = [
        {"code": "gdlphys", "n_atoms": 10, "periodic": True, "seconds": 1.0, "pairs": 4},
        {"code": "vesin", "n_atoms": 10, "periodic": True, "seconds": 1.0, "pairs": 6},
    ]
    with pytest.raises(RuntimeError, match="disagree"):
        neighbours.check_pair_counts(rows)


def test_missing_peer_environment_says_how_to_make_it(tmp_path, capsys):
    status = main(["bench", "neighbours", "--quick", "--out", str(tmp_path), "--peer-python", str(tmp_path / "nope" / "python")])
    assert status == 1
    err = capsys.readouterr().err
    assert "make bench-env" in err and "peer environment is missing" in err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_peer_scripts_import_nothing_of_gdlphys():
    for script in PEER_SCRIPTS.glob("*.py"):
        assert "gdlphys" not in "".join(l for l in script.read_text().splitlines() if l.lstrip().startswith(("import", "from")))


@needs_peers
def test_peer_neighbour_lists_agree_with_gdlphys(tmp_path):
    python = DEFAULT_PEER_PYTHON  # find_peer_python would import mace: seconds this test does not need
    structures = {n: random_atoms(n, seed=2) for n in (40, 320)}
    archive = tmp_path / "atoms.npz"
    np.savez(archive, **{f"positions_{n}": p for n, (p, _) in structures.items()}, **{f"cell_{n}": c for n, (_, c) in structures.items()})
    result = tmp_path / "out.json"
    subprocess.run(
        [str(python), str(PEER_SCRIPTS / "neighbours.py"), "--structures", str(archive), "--result", str(result), "--repeats", "1"],
        check=True, capture_output=True,
    )
    peer_rows = json.loads(result.read_text())["rows"]
    rows = neighbours.measure_gdlphys(structures, max_seconds=10.0, repeats=1) + peer_rows
    assert {r["code"] for r in peer_rows} == {"ase", "vesin", "matscipy"}
    neighbours.check_pair_counts(rows)  # every code finds the same pairs


def test_nve_drift_reports_a_fitted_drift_and_a_trace(tmp_path):
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron

    from gdlphys.bench.md import drift_plot, initialise_velocities, nve_drift
    from gdlphys.nve import TRACE_POINTS

    atoms = Icosahedron("Cu", 2)
    atoms.calc = EMT()
    initialise_velocities(atoms, 300.0, 0)
    result = nve_drift(atoms, 1.0, 300)
    assert result["finite"] and result["steps"] == 300
    assert len(result["trace_ps"]) == len(result["trace_mev_per_atom"]) <= TRACE_POINTS + 1
    assert result["trace_mev_per_atom"][0] == 0.0 and result["trace_ps"][-1] == pytest.approx(0.3, abs=0.01)
    # EMT is smooth: 0.3 ps of Verlet at 1 fs keeps the total energy; the fitted drift is
    # a smaller number than the largest excursion it averages over
    assert abs(result["fitted_drift_mev_per_atom"]) < max(1.0, result["max_deviation_mev_per_atom"])
    assert drift_plot(tmp_path / "drift.png", result, result, 300).is_file()


def test_memory_child_measures_one_call_in_its_own_process(tmp_path):
    """The memory benchmark's gdlphys side: one call in a fresh process, its peak above what loading took."""
    import ase.io
    import torch
    from structures import tiny_potential

    from gdlphys.bench.memory import _ours, memory_table
    from gdlphys.bench.options import BenchOptions
    from gdlphys.bench.systems import aspirin_molecule, molecule_box
    from gdlphys.models.files import save_potential

    box = molecule_box(aspirin_molecule(), (2, 2, 1))
    ase.io.write(tmp_path / "box.xyz", box, format="extxyz")
    potential = save_potential(tiny_potential(torch.float32), tmp_path / "p.pt")
    options = BenchOptions(out=tmp_path)
    row = _ours(tmp_path / "box.xyz", potential, options, tmp_path / "child.log")
    assert row["n_atoms"] == len(box) and row["edges"] > len(box)
    assert row["peak_rss_gb"] >= row["loaded_rss_gb"] > 0.05 and row["seconds"] > 0
    failed = _ours(tmp_path / "missing.xyz", potential, options, tmp_path / "failed.log")
    assert "exit status" in failed["error"]
    table = memory_table([len(box), 10], [row, failed], [{"skipped": "above 5 atoms"}, {"skipped": "above 5 atoms"}], "tiny", options)
    assert table.rows[0].values["gdlphys"] == row["peak_rss_gb"] and table.rows[0].values["MACE"] is None
    assert any("not run" in note for note in table.notes) and any("exit status" in note for note in table.notes)


def test_defaults_rows_leave_threads_to_each_code(monkeypatch):
    """At their defaults the peer's child gets no thread limit, and gdlphys the threads a fresh script
    has, whatever this process set; the table has a row per size, condition and kind."""
    from gdlphys.bench.md import defaults_table
    from gdlphys.bench.options import BenchOptions
    from gdlphys.bench.peers import default_torch_threads, thread_environment

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fresh = default_torch_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert "OMP_NUM_THREADS" not in thread_environment(None) and thread_environment(3)["MKL_NUM_THREADS"] == "3"
    assert default_torch_threads() == fresh >= 1
    row = {"n_atoms": 21, "steps_per_second": 20.0, "dtype": "float32", "script_threads": 2, "first_call_seconds": 9.0}
    ours = {c: {"eager": [row], "compiled": [{**row, "steps_per_second": 40.0}]} for c in ("quiet", "busy")}
    peer = {c: {"speed": [{"steps_per_second": 10.0}], "threads": 2, "dtype": "float32"} for c in ("quiet", "busy")}
    table = defaults_table(ours, peer, "fresh", BenchOptions())
    assert [r.name for r in table.rows] == ["21 atoms, quiet", "21 atoms, busy", "21 atoms, quiet, gdlphys compiled", "21 atoms, busy, gdlphys compiled"]
    assert table.ratio_of(table.rows[0]) == 2.0 and table.ratio_of(table.rows[2]) == 4.0
    assert any("2 torch threads" in n for n in table.notes) and any("first calls (quiet) 9 s" in n for n in table.notes)


def test_accuracy_dataset_and_command_at_defaults(tmp_path):
    """--dataset takes a shipped name or a folder; at its defaults `gdlphys train` gets no --threads
    and no accelerator, which would turn off its data-parallel default."""
    from gdlphys.bench.accuracy import describe, train_command
    from gdlphys.bench.options import BenchOptions

    assert dataset_split("aspirin-xtb") == aspirin_split() == dataset_split(aspirin_split().train.parent)
    assert describe(aspirin_split(), "aspirin-xtb") == "aspirin-xtb (C9H8O4, GFN2-xTB)"
    with pytest.raises(FileNotFoundError, match="no dataset nowhere"):
        dataset_split("nowhere")
    (tmp_path / "train.h5").touch()
    with pytest.raises(FileNotFoundError, match="valid.h5"):
        dataset_split(tmp_path)
    split, options = aspirin_split(), BenchOptions()
    ours = train_command(split, tmp_path / "run", 60.0, options, None)
    assert "--threads" not in ours and not any("accelerator" in a for a in ours) and ours[ours.index("--max-time") + 1] == "60s"
    one = train_command(split, tmp_path / "run", 60.0, options, 1)
    assert one[one.index("--threads") + 1] == "1"

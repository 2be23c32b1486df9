"""Active learning: selection, the hard limit, and the whole loop (real tblite, fine-tuning and
ASE MD, tiny): its files, the label budget, resuming, the random baseline, a new element."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gdlphys.cli import main
from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.learn import LearnConfig, distance_descriptor, learn, select_by_spread, select_random
from gdlphys.learn.explore import TrajectoryJob, run_trajectory
from gdlphys.models.files import load_potential, save_potential
from gdlphys.train.config import FitConfig
from gdlphys.train.run import train_potential

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structures import tiny_config, tiny_potential

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"
# tiny: 2 members, 4 seed frames, one 40-step trajectory a round, 2 labels a round, 1 epoch of fine-tuning
TINY = dict(temperatures=[300.0], trajectories=1, steps=40, interval=5, per_round=2, seed_frames=4, committee_size=2,
            retrain_epochs=1, max_force_std=1e-4, hard_force_std=50.0, min_separation_fs=5.0, min_distance=0.0,
            calibration_frames=3, accelerator="cpu", progress=False)


def test_selection_takes_the_largest_spreads_spread_out_in_time_and_structure():
    spread = np.array([0.1, 0.9, 0.8, 0.7, 0.05, 0.6, 0.5])
    trajectory = np.array([0, 0, 0, 0, 1, 1, 1])
    time_fs = np.array([0, 10, 15, 40, 0, 10, 20.0])
    rng = np.random.default_rng(0)
    descriptors = [rng.normal(size=3) for _ in spread]
    descriptors[6] = descriptors[1] + 0.01  # a near-copy of frame 1 in another trajectory
    chosen = select_by_spread(spread, trajectory, time_fs, descriptors, threshold=0.2, limit=10, min_separation_fs=20,
                              min_distance=0.1)
    # 1 (largest); 2 is 5 fs after it; 3 is 30 fs away; 5 in another trajectory; 6 is a copy of 1; 0 and 4 under the threshold
    assert chosen == [1, 3, 5]
    assert select_by_spread(spread, trajectory, time_fs, descriptors, 0.2, limit=2, min_separation_fs=20) == [1, 3]
    assert select_by_spread(spread, trajectory, time_fs, descriptors, threshold=1.0, limit=5) == []
    picked = select_random(7, 3, np.random.default_rng(1), exclude=[1, 2])
    assert len(picked) == 3 and not {1, 2} & set(picked)


def test_distance_descriptor_ignores_rotation_and_atom_order():
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(5, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = (positions @ q.T + 1.5)[[3, 0, 4, 1, 2]]
    np.testing.assert_allclose(distance_descriptor(moved), distance_descriptor(positions), atol=1e-12)


def _two_members(tmp_path: Path) -> tuple[str, str]:
    paths = []
    for seed in (0, 1):
        paths.append(str(save_potential(tiny_potential(seed=seed), tmp_path / f"m{seed}.pt")))
    return tuple(paths)


def test_trajectory_stops_at_the_hard_limit_and_keeps_nothing_from_there(tmp_path):
    from gdlphys.molecules import smiles_to_atoms

    members = _two_members(tmp_path)
    start = smiles_to_atoms("CO")[0]
    job = TrajectoryJob(0, members, start, 300.0, 30, 0.5, 5, 0.01, 50.0, 0)
    frames, spreads, summary = run_trajectory(job)
    assert summary.stopped is None and len(frames) == 6 and summary.steps_run == 30
    assert all(s.shape == (6,) and s.max() > 0 for s in spreads)  # two different members: a spread everywhere
    limit = 0.5 * min(s.max() for s in spreads)
    frames, spreads, summary = run_trajectory(TrajectoryJob(0, members, start, 300.0, 30, 0.5, 5, 0.01, limit, 0))
    assert "hard limit" in summary.stopped and frames == [] and summary.steps_run == 5


def test_trajectory_rolls_back_at_the_hard_limit_then_stops(tmp_path):
    """At the limit a trajectory goes back with new velocities (the same path until then), keeps
    exploring below the limit, marks its last safe frame before each event, and stops after its last rollback."""
    from gdlphys.learn.explore import Exploration
    from gdlphys.molecules import smiles_to_atoms

    members = _two_members(tmp_path)
    start = smiles_to_atoms("CO")[0]
    _, free, _ = run_trajectory(TrajectoryJob(0, members, start, 300.0, 60, 0.5, 5, 0.01, 50.0, 0))
    limit = float(np.sort([s.max() for s in free])[-3])  # two frames of the free run pass it, the first does not
    assert free[0].max() < limit
    runs = {n: run_trajectory(TrajectoryJob(0, members, start, 300.0, 60, 0.5, 5, 0.01, limit, 0, n)) for n in (0, 3)}
    (frames0, _, once), (frames, spreads, rolled) = runs[0], runs[3]
    assert once.rollbacks == 0 and "hard limit" in once.stopped
    assert 1 <= rolled.rollbacks <= 3 and (rolled.stopped is None or rolled.rollbacks == 3)
    assert rolled.steps_run > once.steps_run and len(frames) >= len(frames0)
    assert all(s.max() <= limit for s in spreads)  # nothing at or past the limit is kept
    for a, b in zip(frames0, frames):  # the same trajectory up to the first event
        np.testing.assert_allclose(a.positions, b.positions)
    exploration = Exploration(frames, spreads, [rolled])
    assert not exploration.full_length and exploration.before_limit()
    exploration.save(tmp_path / "explore")
    assert Exploration.load(tmp_path / "explore").before_limit() == exploration.before_limit()
    with pytest.raises(ValueError, match="rollbacks must be >= 0"):
        LearnConfig(rollbacks=-1)


def test_exploration_moves_on_one_member_and_is_judged_by_all(tmp_path):
    """``driver``: the energy and forces are that member's alone, the spread still the committee's;
    exploration drives trajectory k on member k modulo their number."""
    from gdlphys import GDLCalculator
    from gdlphys.learn.explore import explore
    from gdlphys.molecules import smiles_to_atoms

    members = _two_members(tmp_path)
    start = smiles_to_atoms("CO")[0]
    mean = GDLCalculator(list(members), dtype="float64")
    mean.calculate(start, ["energy", "forces"])
    for k in (0, 1):
        alone, driven = GDLCalculator(members[k], dtype="float64"), GDLCalculator(list(members), dtype="float64", driver=k)
        alone.calculate(start, ["energy", "forces"])
        driven.calculate(start, ["energy", "forces"])
        np.testing.assert_allclose(driven.results["forces"], alone.results["forces"], atol=1e-12)
        assert driven.results["energy"] == pytest.approx(alone.results["energy"], abs=1e-10)
        np.testing.assert_allclose(driven.results["forces_std"], mean.results["forces_std"], atol=1e-12)
    assert not np.allclose(mean.results["forces"], alone.results["forces"])
    for bad in (2, -1, True, 0.5):
        with pytest.raises(ValueError, match="driver must be"):
            GDLCalculator(list(members), driver=bad)
    found = explore(members, [start], [300.0], 3, 10, 0.5, 5, 0.01, 50.0, 0, drive="members")
    assert [t.driver for t in found.trajectories] == [0, 1, 0]
    assert [t.driver for t in explore(members, [start], [300.0], 2, 5, 0.5, 5, 0.01, 50.0, 0, drive="members",
                                      first_driver=3).trajectories] == [1, 0]
    by_mean = explore(members, [start], [300.0], 1, 10, 0.5, 5, 0.01, 50.0, 0)
    assert by_mean.trajectories[0].driver is None
    first = [f for f in found.frames if f.info["trajectory"] == 0]  # on member 0, the same seed as by_mean's
    assert len(first) == len(by_mean.frames) == 2 and not np.allclose(first[-1].positions, by_mean.frames[-1].positions)
    with pytest.raises(ValueError, match="unknown drive"):
        LearnConfig(drive="best")


def test_dft_labels_are_pyscfs(tmp_path):
    """``--label dft``: PBE/def2-SVP through PySCF, the same numbers as the calculator itself, the
    method recorded in the file, the finished step recorded for a resumed run."""
    from ase.build import molecule

    from gdlphys.data.dft import PySCFCalculator, dft_method
    from gdlphys.learn.labelling import finished_labels, label_frames

    water = molecule("H2O")
    water.positions += np.random.default_rng(0).normal(scale=0.03, size=water.positions.shape)
    outcome = label_frames([water], tmp_path / "labelled.h5", "dft", dft_method())
    assert outcome.labelled == 1 and not outcome.failed
    (frame,) = read_hdf5(outcome.path)
    direct = water.copy()
    direct.calc = PySCFCalculator()
    assert frame.get_potential_energy() == pytest.approx(direct.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(frame.get_forces(), direct.get_forces(), atol=1e-5)
    assert finished_labels(tmp_path / "labelled.h5").labelled == 1
    from gdlphys.data.hdf5 import FrameReader

    with FrameReader(outcome.path) as reader:
        assert reader.attrs["method"] == dft_method() == LearnConfig(label="dft").method


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown label method 'ccsd'"):
        LearnConfig(label="ccsd")
    with pytest.raises(ValueError, match=r"budget_labels \(3\) is smaller than per_round \(5\)"):
        LearnConfig(budget_labels=3, per_round=5)
    with pytest.raises(ValueError, match="max_force_std < hard_force_std"):
        LearnConfig(max_force_std=1.0, hard_force_std=0.5)
    members = _two_members(tmp_path)
    with pytest.raises(ValueError, match="neither a file nor a valid SMILES"):
        learn("C1CC(", list(members), tmp_path / "run", **TINY)
    assert main(["learn", "CCO", "--potential", "no-such-potential", "-o", str(tmp_path / "x")]) == 1
    assert "no-such-potential" in capsys.readouterr().err
    assert main(["learn", "CCO", "--potential", members[0], "--budget-labels", "2", "--per-round", "4",
                 "-o", str(tmp_path / "y")]) == 1
    assert "smaller than per_round" in capsys.readouterr().err


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A tiny H, C, O potential trained one epoch on 24 ethanol frames (its training data is found by hash: replay)."""
    folder = tmp_path_factory.mktemp("learn-parent")
    ethanol = folder / "ethanol.h5"
    write_hdf5(ethanol, read_hdf5(ETHANOL, index=slice(0, 24)), method="GFN2-xTB")
    result = train_potential(
        ethanol, folder / "parent", model=tiny_config(cutoff=4.0, l_max=1, num_layers=1),
        fit=FitConfig(batch_size=4, valid_fraction=0.25, lr=0.01), trainer={"accelerator": "cpu"}, max_epochs=1,
        progress=False,
    )
    return result.potential_path


def test_loop_writes_its_record_resumes_and_stops_at_the_budget(parent, tmp_path):
    run = tmp_path / "run"
    first = learn("CO", str(parent), run, rounds=1, budget_labels=8, **TINY)
    assert first.finished == "rounds" and first.labels_used == 6  # 4 seeds + 2
    for name in ("state.json", "rounds.json", "rounds.png", "card.md", "committee.yaml", "potential.pt",
                 "committee/member-0.pt", "committee/member-1.pt", "calibration.json", "calibration.png",
                 "round-00/labelled.h5", "round-01/explore/explored.h5", "round-01/selected.json", "round-01/labelled.h5",
                 "round-01/train.h5", "round-01/member-1/potential.pt"):
        assert (run / name).is_file(), name
    rounds = json.loads((run / "rounds.json").read_text())
    assert len(rounds) == 1 and rounds[0]["labelled"] == 2 and rounds[0]["spread"]["frames"] == 8
    assert rounds[0]["errors"]["new_frames_before"]["forces_mae"] > 0 and rounds[0]["errors"]["validation_after"]
    assert set(rounds[0]["wall_s"]) == {"explore", "label", "retrain"}
    assert len(read_hdf5(run / "round-01" / "train.h5")) == 6
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["frames"] == 3 and calibration["mean_spread"] > 0  # the members differ
    assert "Spearman" in (run / "card.md").read_text()

    # more rounds: round 1 is not redone, and the budget (8 labels) ends the loop after round 2
    stamp = (run / "round-01" / "labelled.h5").stat().st_mtime_ns
    second = learn("CO", str(parent), run, rounds=5, budget_labels=8, **TINY)
    assert (run / "round-01" / "labelled.h5").stat().st_mtime_ns == stamp
    assert second.finished == "budget" and second.labels_used == 8 and len(second.rounds) == 2
    assert not (run / "round-03").exists()
    assert len(read_hdf5(run / "round-02" / "train.h5")) == 8
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] == "budget" and state["last_step"] == {"round": 2, "step": "retrain"}
    with pytest.raises(ValueError, match="another settings"):
        learn("CO", str(parent), run, rounds=5, budget_labels=8, **{**TINY, "per_round": 1})


def test_random_baseline_learns_a_new_element_from_the_cli(parent, tmp_path):
    run = tmp_path / "random"
    argv = ["learn", "CN", "--potential", str(parent), "--select", "random", "--rounds", "1", "--budget-labels", "6",
            "--per-round", "2", "--seed-frames", "4", "--committee-size", "2", "--trajectories", "2", "--steps", "20",
            "--interval", "5", "--retrain-epochs", "1", "--calibration-frames", "0", "--workers", "2",
            "--accelerator", "cpu", "--quiet", "-o", str(run)]
    assert main(argv) == 0
    rounds = json.loads((run / "rounds.json").read_text())
    assert rounds[0]["selection"] == "random" and rounds[0]["labelled"] == 2 and rounds[0]["trajectories"] == 2
    assert 7 in load_potential(run / "potential.pt").species  # N: new to the parent
    assert not (run / "calibration.json").exists()

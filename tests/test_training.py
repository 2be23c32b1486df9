"""Training end to end on a few real (GFN2-xTB) frames: loss goes down, files appear, resume, config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gdlphys.cli import main
from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.models.files import load_potential
from gdlphys.train.plots import read_metric_rows
from gdlphys.train.run import metrics_files

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"
TINY_CONFIG = """
model: {cutoff: 4.0, num_features: 8, l_max: 1, num_layers: 1, num_basis: 6, radial_hidden: 16, readout_hidden: 8}
fit: {batch_size: 4, valid_batch_size: 16, lr: 0.01, valid_fraction: 0.25}
trainer: {accelerator: cpu}
"""


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.h5"
    write_hdf5(path, read_hdf5(ETHANOL, index=slice(0, 32)), method="GFN2-xTB")
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


def _val_losses(run: Path) -> list[float]:
    return [float(r["val/loss"]) for r in read_metric_rows(metrics_files(run)) if r.get("val/loss")]


def test_training_lowers_the_loss_and_writes_a_run_dir(small_set, config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--train", str(small_set), "--config", str(config), "--max-epochs", "6", "--quiet", "true", "-o", str(run)]) == 0
    losses = _val_losses(run)
    assert len(losses) == 6 and min(losses[-2:]) < losses[0]
    for name in ("potential.pt", "config.yaml", "learning_curve.png", "checkpoints/last.ckpt", "logs/attempt-0/metrics.csv"):
        assert (run / name).is_file(), name
    blob = torch.load(run / "potential.pt", weights_only=True)
    for field in ("config", "species", "cutoff", "reference_energies", "units", "format_version", "metadata"):
        assert field in blob
    assert blob["species"] == [1, 6, 8] and blob["cutoff"] == 4.0
    assert len(blob["metadata"]["training_data_sha256"]) == 64
    potential = load_potential(run)
    assert potential.config.num_features == 8

    capsys.readouterr()
    assert main(["eval", str(run), str(small_set), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"energy_mae", "energy_rmse", "forces_mae", "forces_rmse", "n_frames"} <= set(metrics)
    assert metrics["n_frames"] == 32 and 0 < metrics["forces_mae"] < 5


def test_resume_continues_from_the_last_checkpoint(small_set, config, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--train", str(small_set), "--config", str(config), "--quiet", "true", "-o", str(run)]
    assert main(args + ["--max-epochs", "2"]) == 0
    steps_after_two = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert main(args + ["--max-epochs", "3"]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == steps_after_two * 3 // 2
    assert len(_val_losses(run)) == 3


def test_a_mistyped_option_fails_before_training(small_set, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {num_featurs: 8}\n")
    assert main(["train", "--train", str(small_set), "--config", str(bad), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "num_featurs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_splits_are_reproducible_and_disjoint():
    from gdlphys.data.datamodule import split_indices

    train, valid = split_indices(100, 0.1, seed=3)
    again_train, again_valid = split_indices(100, 0.1, seed=3)
    assert (train == again_train).all() and (valid == again_valid).all()
    assert len(valid) == 10 and not set(train) & set(valid) and len(set(train) | set(valid)) == 100
    assert not (split_indices(100, 0.1, seed=4)[1] == valid).all()
    with pytest.raises(ValueError, match="valid_fraction"):
        split_indices(100, 1.5, seed=0)


def test_durations():
    from datetime import timedelta

    from gdlphys.train.run import parse_duration

    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration("00:00:02:30") == timedelta(minutes=2, seconds=30)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_stage_two_raises_the_energy_weight_and_lowers_the_lr_late(small_set, config, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--train", str(small_set), "--config", str(config), "--quiet", "true", "-o", str(run)]
    options = ["--fit.stage_two_fraction", "0.5", "--fit.stage_two_lr_factor", "0.1", "--fit.lr_patience", "100"]
    assert main(args + options + ["--max-epochs", "4"]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["gdlphys_stage"] == 2
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.001)
    captured = capsys.readouterr()
    assert "stage two from epoch 2" in captured.out + captured.err


def test_cosine_schedule_follows_the_budget_down_to_min_lr(small_set, config, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--train", str(small_set), "--config", str(config), "--quiet", "true", "-o", str(run)]
    options = ["--fit.lr_schedule", "cosine", "--fit.min_lr", "1e-4", "--fit.stage_two_fraction", "0.5", "--fit.stage_two_lr_factor", "0.1"]
    assert main(args + options + ["--max-epochs", "4"]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # 24 training frames, batches of 4: six steps an epoch; the last step of epoch 4 sets
    # the LR at 23/24 of the budget, and stage two leaves the cosine alone.
    expected = 1e-4 + 0.5 * (0.01 - 1e-4) * (1 + math.cos(math.pi * 23 / 24))
    assert ckpt["gdlphys_stage"] == 2
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(expected, rel=1e-9)
    assert not ckpt.get("lr_schedulers")  # no plateau schedule stepping on top


def test_unknown_lr_schedule_is_refused():
    from gdlphys.train.config import FitConfig

    with pytest.raises(ValueError, match="lr_schedule"):
        FitConfig(lr_schedule="linear-warmup")


def test_ema_warmup_follows_the_weights_early_then_decays_at_the_set_rate():
    from gdlphys.train.system import ema_average_fn

    for warmup, first in ((True, 1.0 - 2.0 / 11.0), (False, 0.01)):
        average = ema_average_fn(0.99, warmup)
        ema, model = [torch.zeros(3)], [torch.ones(3)]
        average(ema, model, torch.tensor(1))  # the step after the copy: decay (1 + 1) / (10 + 1) with warm-up
        assert float(ema[0][0]) == pytest.approx(first)
    average = ema_average_fn(0.99, True)
    ema = [torch.zeros(3)]
    average(ema, [torch.ones(3)], torch.tensor(10_000))  # long after: the set decay
    assert float(ema[0][0]) == pytest.approx(0.01)
    lookup = [torch.tensor([-1, 0, 1])]
    average(lookup, [torch.tensor([-1, 0, 1])], torch.tensor(5))
    assert lookup[0].tolist() == [-1, 0, 1]


def test_default_batch_holds_about_48_atoms_and_the_potential_records_it(small_set, config, tmp_path):
    from gdlphys.train.config import FitConfig

    assert FitConfig().batch_size is None
    assert FitConfig().resolved_batch_size(21) == 2  # aspirin
    assert FitConfig().resolved_batch_size(9) == 5  # ethanol
    assert FitConfig().resolved_batch_size(500) == 1
    assert FitConfig(batch_size=7).resolved_batch_size(9) == 7
    run = tmp_path / "run"
    tiny = config.read_text().replace("batch_size: 4, ", "")
    (tmp_path / "tiny.yaml").write_text(tiny)
    assert main(["train", "--train", str(small_set), "--config", str(tmp_path / "tiny.yaml"), "--max-epochs", "1", "--quiet", "true", "-o", str(run)]) == 0
    assert torch.load(run / "potential.pt", weights_only=True)["metadata"]["fit"]["batch_size"] == 5  # ethanol frames


def test_eval_sharded_over_processes_equals_one_process_in_file_order():
    from gdlphys.models.files import load_potential
    from gdlphys.train.evaluate import evaluate_potential

    data = Path(__file__).resolve().parent.parent / "datasets" / "nci-xtb" / "valid.h5"
    potential = load_potential("organic-xtb")
    one = evaluate_potential(potential, data, batch_size=16)
    two = evaluate_potential(potential, data, batch_size=16, processes=2)
    assert one.metrics.keys() == two.metrics.keys() and one.metrics["n_frames"] == two.metrics["n_frames"]
    for name, value in one.metrics.items():
        assert two.metrics[name] == pytest.approx(value, rel=1e-6), name
    for a, b in zip(one.energy + one.forces + one.dipole, two.energy + two.forces + two.dipole):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_loader_workers_train_the_same_weights_as_the_main_process(small_set, config, tmp_path):
    """fit.num_workers > 0: each worker opens the file itself (FrameReader drops its handle when
    pickled) and keeps its own capped graph cache; the batches, and so the weights, are the same."""
    runs = {}
    for workers in (0, 2):
        run = tmp_path / f"workers-{workers}"
        argv = ["train", "--train", str(small_set), "--config", str(config), "--fit.num_workers", str(workers),
                "--fit.dtype", "float64", "--max-epochs", "2", "--quiet", "true", "-o", str(run)]
        assert main(argv) == 0
        runs[workers] = torch.load(run / "potential.pt", weights_only=True)["state_dict"]
    for name, value in runs[0].items():
        torch.testing.assert_close(runs[2][name], value, rtol=1e-9, atol=1e-12, msg=name)

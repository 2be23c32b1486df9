"""Data-parallel training (Lightning DDP, two CPU processes over gloo): sharded samplers, the same
weights as one process with twice the batch, one potential file, a killed run that resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.data.datamodule import EpochShuffler, ShardedInOrder
from gdlphys.train.replay import ReplaySampler

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"


@pytest.mark.parametrize("n", [10, 11, 13])
def test_shards_are_disjoint_even_and_interleave_the_single_process_order(n):
    for sampler_of in (lambda r, w: EpochShuffler(n, seed=4, rank=r, world_size=w),
                       lambda r, w: ReplaySampler(n - 3, 7, 3, seed=4, rank=r, world_size=w)):
        full = list(sampler_of(0, 1))
        shards = [list(sampler_of(r, 2)) for r in range(2)]
        assert len(shards[0]) == len(shards[1]) == len(full) // 2 == len(sampler_of(0, 2))
        assert sorted(shards[0] + shards[1]) == sorted(full[: 2 * (len(full) // 2)])
        batch = 2  # step k of two ranks with batch 2 = step k of one process with batch 4
        for k in range(len(shards[0]) // batch):
            together = shards[0][k * batch : (k + 1) * batch] + shards[1][k * batch : (k + 1) * batch]
            assert sorted(together) == sorted(full[k * 2 * batch : (k + 1) * 2 * batch])
    assert sorted(list(ShardedInOrder(n, 0, 2)) + list(ShardedInOrder(n, 1, 2))) == list(range(n))  # no padding


def _train(run: Path, data: dict, batch: int, devices: int, epochs: int = 2, wait: bool = True):
    argv = [
        sys.executable, "-m", "gdlphys.cli", "train", "--train", str(data["train"]), "--valid", str(data["valid"]),
        "--model.num_features", "8", "--model.num_layers", "1", "--model.l_max", "1", "--fit.dtype", "float64",
        "--fit.batch_size", str(batch), "--max-epochs", str(epochs), "--trainer.accelerator", "cpu", "--quiet", "true",
        "-o", str(run),
    ]
    if devices > 1:
        argv += ["--trainer.strategy", "ddp", "--trainer.devices", str(devices)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "potential.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp-data")
    frames = read_hdf5(ETHANOL)  # one molecule: every rank's share holds as many atoms as the other's
    write_hdf5(folder / "train.h5", frames[:24], method="GFN2-xTB")
    write_hdf5(folder / "valid.h5", frames[24:33], method="GFN2-xTB")
    return {"train": folder / "train.h5", "valid": folder / "valid.h5"}


def test_two_processes_with_batch_b_equal_one_with_batch_2b(data, tmp_path):
    _train(tmp_path / "one", data, batch=4, devices=1)
    ddp = _train(tmp_path / "ddp", data, batch=2, devices=2)
    assert ddp.stderr.count("potential: ") <= 1  # the summary once, from rank 0
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "ddp")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-7, atol=1e-9, msg=name)
    changed = [n for n in one if one[n].is_floating_point() and not torch.equal(one[n], _fresh(tmp_path, data)[n])]
    assert changed  # the weights did train
    steps = {run: _global_steps(tmp_path / run) for run in ("one", "ddp")}
    assert steps["one"] == steps["ddp"] == 2 * 24 // 4  # each rank took half the steps of one process at batch 2


def _global_steps(run: Path) -> int:
    return int(torch.load(run / "potential.pt", weights_only=True)["metadata"]["global_steps"])


def _fresh(tmp_path: Path, data: dict) -> dict[str, torch.Tensor]:
    run = tmp_path / "fresh"
    if not (run / "potential.pt").exists():
        _train(run, data, batch=4, devices=1, epochs=0)
    return _weights(run)


def test_killed_ddp_run_resumes_to_the_same_weights(data, tmp_path):
    _train(tmp_path / "whole", data, batch=2, devices=2, epochs=4)
    run = tmp_path / "killed"
    process = _train(run, data, batch=2, devices=2, epochs=4, wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (run / "checkpoints" / "last.ckpt").exists():
            time.sleep(0.2)
        assert (run / "checkpoints" / "last.ckpt").exists(), "no checkpoint within 5 minutes"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # both ranks
        process.wait()
    assert not (run / "potential.pt").exists()
    _train(run, data, batch=2, devices=2, epochs=4)
    assert len(list(run.glob("logs/attempt-*/metrics.csv"))) == 2  # a second attempt, resumed from the checkpoint
    whole, again = _weights(tmp_path / "whole"), _weights(run)
    for name in whole:
        torch.testing.assert_close(again[name], whole[name], rtol=1e-7, atol=1e-9, msg=name)
    assert np.isfinite(sum(float(v.double().sum()) for v in again.values() if v.is_floating_point()))


def test_finetune_runs_under_ddp(tmp_path):
    new = tmp_path / "nitrogen.h5"
    write_hdf5(new, read_hdf5(ROOT / "datasets" / "nitrogen-xtb" / "train.h5", index=slice(0, 16)), method="GFN2-xTB")
    run = tmp_path / "ft"
    argv = [sys.executable, "-m", "gdlphys.cli", "finetune", "ethanol-xtb", "--train", str(new), "--valid-fraction", "0.25",
            "--batch-size", "2", "--max-epochs", "1", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--quiet", "-o", str(run)]
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "potential.pt").is_file() and (run / "card.md").is_file()
    assert done.stderr.count("potential: ") == 1


def test_a_diverging_ddp_run_stops_on_every_rank_and_writes_no_potential(data, tmp_path):
    run = tmp_path / "nan"
    argv = [sys.executable, "-m", "gdlphys.cli", "train", "--train", str(data["train"]), "--valid", str(data["valid"]),
            "--model.num_features", "8", "--model.num_layers", "1", "--fit.batch_size", "2", "--fit.lr", "1e30",
            "--max-epochs", "3", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
            "--quiet", "true", "-o", str(run)]
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)  # a rank left waiting in an all-reduce would hang until this timeout
    assert done.returncode != 0
    assert "non-finite" in done.stderr
    assert not (run / "potential.pt").exists()


def test_the_command_trains_data_parallel_by_default_where_it_may(data, tmp_path, monkeypatch):
    from gdlphys.cli import train_command

    monkeypatch.delenv(train_command.DATA_PARALLEL_ENV, raising=False)
    argv = ["--train", "big.h5", "-o", "run"]
    # from pytest (or any script) the command line is not gdlphys': Lightning could not re-run it
    assert train_command.data_parallel_default({}, 10_000, argv, None) == ({}, None)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/gdlphys", "train", *argv])
    monkeypatch.setattr("gdlphys.threads.IdleCores.__call__", lambda self, usable: 2)
    assert train_command.data_parallel_default({}, 100, argv, None) == ({}, None)  # too few frames to pay
    for chosen in ({"devices": 1}, {"strategy": "auto"}, {"accelerator": "cpu"}):  # the user's choice stands
        assert train_command.data_parallel_default(chosen, 10_000, argv, None) == (chosen, None)
    assert train_command.data_parallel_default({}, 10_000, argv, 2) == ({}, None)  # --threads: one process
    trainer, note = train_command.data_parallel_default({}, 10_000, argv, None)
    assert trainer == {"accelerator": "cpu", "strategy": "ddp", "devices": 2} and "2 data-parallel" in note
    assert os.environ[train_command.DATA_PARALLEL_ENV] == "2"  # what the ranks Lightning starts will read
    monkeypatch.setenv(train_command.DATA_PARALLEL_ENV, "1")
    assert train_command.data_parallel_default({}, 10_000, argv, None) == ({}, None)

    # end to end: the command with no parallel options, GDLPHYS_DATA_PARALLEL=2, two ranks of half the steps
    run = tmp_path / "default"
    command = [sys.executable, "-m", "gdlphys.cli", "train", "--train", str(data["train"]), "--valid", str(data["valid"]),
               "--model.num_features", "8", "--model.num_layers", "1", "--model.l_max", "1", "--fit.batch_size", "2",
               "--max-epochs", "1", "-o", str(run)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, train_command.DATA_PARALLEL_ENV: "2", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("2 data-parallel processes") == 1
    steps = torch.load(run / "potential.pt", weights_only=True)["metadata"]["global_steps"]
    assert steps == 24 // (2 * 2)  # 24 frames, batch 2 on each of 2 ranks

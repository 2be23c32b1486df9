"""Training cut short (cleanly or by SIGKILL) resumes to the very result of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gdlphys.cli import main
from gdlphys.data import read_hdf5, write_hdf5
from gdlphys.data.datamodule import EpochShuffler

ROOT = Path(__file__).resolve().parent.parent
ETHANOL = ROOT / "datasets" / "ethanol-xtb" / "train.h5"
EPOCHS = 5
CONFIG = """
model: {cutoff: 4.0, num_features: 4, l_max: 1, num_layers: 1, num_basis: 4, radial_hidden: 8, readout_hidden: 4}
fit: {batch_size: 4, valid_batch_size: 8, lr: 0.02, valid_fraction: 0.25, lr_patience: 0, lr_factor: 0.7, ema_decay: 0.9, dtype: float64}
trainer: {accelerator: cpu}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("resume")
    data = folder / "small.h5"
    write_hdf5(data, read_hdf5(ETHANOL, index=slice(0, 16)), method="GFN2-xTB")
    config = folder / "tiny.yaml"
    config.write_text(CONFIG)
    return data, config


def _args(setup, run: Path, epochs: int) -> list[str]:
    data, config = setup
    return ["train", "--train", str(data), "--config", str(config), "--quiet", "true", "-o", str(run), "--max-epochs", str(epochs)]


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    assert main(_args(setup, run, EPOCHS)) == 0
    return run


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)


def _assert_close(a, b, what: str) -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=lambda m: f"{what}: {m}")
    elif isinstance(a, dict):
        assert set(a) == set(b), what
        for key in a:
            _assert_close(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{what}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-12), what
    else:
        assert a == b, what


def _assert_same_run(resumed: Path, reference: Path) -> None:
    got, want = _checkpoint(resumed), _checkpoint(reference)
    assert got["global_step"] == want["global_step"] and got["epoch"] == want["epoch"] == EPOCHS - 1
    _assert_close(got["state_dict"], want["state_dict"], "weights and EMA")
    _assert_close(got["optimizer_states"], want["optimizer_states"], "optimiser")
    _assert_close(got["lr_schedulers"], want["lr_schedulers"], "LR schedule")
    final = torch.load(resumed / "potential.pt", weights_only=True)["state_dict"]
    _assert_close(final, torch.load(reference / "potential.pt", weights_only=True)["state_dict"], "potential.pt")


def test_shuffling_depends_on_seed_and_epoch_only():
    sampler = EpochShuffler(10, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    again = EpochShuffler(10, seed=3)
    again.set_epoch(1)
    assert list(again) == second


def test_resume_reaches_the_uninterrupted_result(setup, uninterrupted, tmp_path):
    run = tmp_path / "run"
    assert main(_args(setup, run, 2)) == 0
    assert main(_args(setup, run, EPOCHS)) == 0
    _assert_same_run(run, uninterrupted)


def test_sigkill_mid_training_loses_nothing(setup, uninterrupted, tmp_path):
    run = tmp_path / "run"
    code = "import sys; from gdlphys.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen([sys.executable, "-c", code, *_args(setup, run, EPOCHS)], cwd=ROOT)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 0 < killed_at < _checkpoint(uninterrupted)["global_step"]
    assert not (run / "potential.pt").exists()
    assert main(_args(setup, run, EPOCHS)) == 0
    _assert_same_run(run, uninterrupted)

"""Faults during long runs: MD meeting a non-finite energy, and the calculator cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read
from torch import nn

from gdlphys import keys
from gdlphys.calculator import GDLCalculator
from gdlphys.md import run_md
from gdlphys.testing.oracle import LennardJonesEnergy
from structures import random_crystal, tiny_potential

D = 2 ** (1 / 6) * 2.3 / np.sqrt(2)  # an LJ octahedron near its minimum
OCTAHEDRON = [[D, 0, 0], [-D, 0, 0], [0, D, 0], [0, -D, 0], [0, 0, D], [0, 0, -D]]


class CountingEnergy(nn.Module):
    """Lennard-Jones that counts its evaluations and, from evaluation ``nan_from`` on, returns NaN."""

    def __init__(self, nan_from: int | None = None) -> None:
        super().__init__()
        self.lj = LennardJonesEnergy(2.3, 0.05, 5.0)
        self.nan_from = nan_from
        self.calls = 0

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls += 1
        data = self.lj(data)
        if self.nan_from is not None and self.calls >= self.nan_from:
            data[keys.ATOMIC_ENERGIES] = data[keys.ATOMIC_ENERGIES] * float("nan")
        return data


def _calculator(energy: CountingEnergy) -> GDLCalculator:
    potential = tiny_potential(torch.float64, cutoff=5.0)
    potential.model = energy
    return GDLCalculator(potential)


def test_md_stops_at_a_non_finite_energy_and_keeps_the_trajectory(tmp_path):
    atoms = Atoms("C6", positions=OCTAHEDRON)
    atoms.calc = _calculator(CountingEnergy(nan_from=25))
    traj = tmp_path / "md.traj"
    with pytest.raises(FloatingPointError, match=r"MD stopped at step \d+: .*non-finite energy.*kept in .*md\.traj"):
        run_md(atoms, steps=100, timestep_fs=1.0, temperature_k=100.0, trajectory=traj, interval=2, progress=False)
    frames = read(traj, index=":")
    assert 10 <= len(frames) <= 13  # every second step up to the 24th evaluation
    assert all(np.isfinite(f.get_potential_energy()) and np.isfinite(f.get_forces()).all() for f in frames)


def test_the_cache_follows_every_input_and_only_those():
    energy = CountingEnergy()
    atoms = random_crystal(3, seed=12, length=5.5)
    atoms.numbers[:] = 6
    atoms.calc = _calculator(energy)
    atoms.get_forces()
    assert energy.calls == 1
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_potential_energies()
    atoms.set_velocities(np.ones((3, 3)))
    atoms.set_masses(np.full(3, 14.0))
    atoms.info["step"] = 3
    atoms.get_forces()
    assert energy.calls == 1, "re-evaluated without any change of positions, numbers, cell or pbc"
    changes = [
        lambda a: a.positions.__setitem__((0, 0), a.positions[0, 0] + 1e-3),
        lambda a: a.set_cell(a.cell.array * 1.001, scale_atoms=False),
        lambda a: a.set_pbc([True, True, False]),
        lambda a: a.numbers.__setitem__(1, 6),  # same value: not a change
        lambda a: a.set_atomic_numbers([6, 6, 7]),
    ]
    expected_calls = [2, 3, 4, 4, 5]
    for change, calls in zip(changes, expected_calls):
        change(atoms)
        atoms.get_forces()
        atoms.get_potential_energy()
        assert energy.calls == calls


def test_md_killed_mid_run_leaves_a_readable_trajectory(tmp_path):
    """SIGKILL while `gdlphys md` writes every step: the frames on disk read back whole."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    traj = tmp_path / "md.traj"
    process = subprocess.Popen(
        [sys.executable, "-m", "gdlphys.cli", "md", "ethanol-xtb", str(root / "datasets/ethanol-xtb/ethanol.xyz"),
         "--steps", "100000", "--interval", "1", "--traj", str(traj), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not traj.exists() or traj.stat().st_size < 60_000):
            time.sleep(0.2)
        assert traj.exists(), "the MD run wrote no trajectory within a minute"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    frames = read(traj, index=":")
    assert len(frames) > 10
    for atoms in frames:
        assert np.all(np.isfinite(atoms.positions)) and len(atoms) == 9

"""Where an active-learning run starts: START (a SMILES, a structure file ase.io reads, or an HDF5
file of frames) as structures, and the seed geometries the first committee is fine-tuned on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from gdlphys.data.hdf5 import read_hdf5
from gdlphys.data.label import tblite_calculator
from gdlphys.data.sampling import MDSampling
from gdlphys.molecules import smiles_to_atoms

__all__ = ["is_labelled", "seed_geometries", "start_structures"]

HDF5_SUFFIXES = (".h5", ".hdf5")
SEED_EQUILIBRATION_STEPS = 100  # GFN2-xTB MD steps before the first seed frame


def start_structures(start: str | Path) -> list[Atoms]:
    """The structures of START: every frame of a file (HDF5 frames keep their labels), or the
    RDKit conformer of a SMILES."""
    path = Path(start).expanduser()
    if path.is_file():
        if path.suffix.lower() in HDF5_SUFFIXES:
            frames = read_hdf5(path)
        else:
            import ase.io

            frames = list(ase.io.read(path, index=":"))
        if not frames:
            raise ValueError(f"START {str(start)!r} holds no structures")
        return frames
    try:
        return smiles_to_atoms(str(start), n_conformers=1, seed=0)
    except ValueError as err:
        raise ValueError(f"START {str(start)!r} is neither a file nor a valid SMILES ({err})") from err


def is_labelled(frames: Sequence[Atoms]) -> bool:
    """Every frame carries energy and forces (an HDF5 file of labelled seed frames)."""
    return all(f.calc is not None and {"energy", "forces"} <= set(f.calc.results) for f in frames)


def seed_geometries(
    starts: Sequence[Atoms], n_frames: int, temperature: float, interval: int, timestep_fs: float, friction: float,
    seed: int,
) -> list[Atoms]:
    """``n_frames`` geometries from GFN2-xTB Langevin MD of the start structures (in turn), one
    every ``interval`` steps: physical whatever the starting potential knows (new elements too)."""
    per_start = math.ceil(n_frames / len(starts))
    sampler = MDSampling(temperature, per_start, interval, timestep_fs, friction, SEED_EQUILIBRATION_STEPS)

    def geometry(atoms: Atoms) -> Atoms:
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions.copy(), cell=atoms.cell, pbc=atoms.pbc)
        if "smiles" in atoms.info:
            frame.info["smiles"] = atoms.info["smiles"]
        return frame

    frames: list[Atoms] = []
    for k, start in enumerate(starts):
        if len(frames) >= n_frames:
            break
        sampled, _ = sampler.sample(start, tblite_calculator(), geometry, np.random.default_rng([seed, k]), lambda: None)
        frames.extend(sampled)
    return frames[:n_frames]

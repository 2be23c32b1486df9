"""The structures of the benchmarks: the aspirin dataset (and its extxyz copies for MACE),
boxes of aspirin copies for MD, and random atoms at water density for neighbour lists; and a
busy core (another process spinning) for the measurements a shared machine gives."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from gdlphys.paths import find_shipped

DATASET = "aspirin-xtb"
WATER_ATOMS_PER_A3 = 0.1003  # 33.4 H2O per nm^3 at 300 K, three atoms each
SPINNER = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def busy_core(seconds: float = 600.0) -> Iterator[None]:
    """One process spinning at the same priority as this one; gone on exit (or after ``seconds``)."""
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER.format(seconds=seconds)])
    try:
        time.sleep(0.3)  # let it reach its loop
        yield
    finally:
        spinner.kill()
        spinner.wait()


@dataclass
class Split:
    """HDF5 files of one dataset split: training, validation, test."""

    train: Path
    valid: Path
    test: Path


def aspirin_split() -> Split:
    return dataset_split(DATASET)


def dataset_split(dataset: str | Path) -> Split:
    """``train.h5``, ``valid.h5`` and ``test.h5`` of a folder, or of a shipped dataset by name
    (``datasets/<name>``)."""
    folder = Path(dataset)
    if not folder.is_dir():
        shipped = find_shipped("datasets", str(dataset))
        if shipped is None:
            raise FileNotFoundError(f"no dataset {dataset}: neither a folder nor a shipped dataset "
                                    f"(a folder with train.h5, valid.h5 and test.h5, or a name under datasets/)")
        folder = shipped
    split = Split(folder / "train.h5", folder / "valid.h5", folder / "test.h5")
    missing = [str(p) for p in (split.train, split.valid, split.test) if not p.is_file()]
    if missing:
        recipe = f"; rebuild with datasets/{DATASET}/recipe.sh" if str(dataset) == DATASET else ""
        raise FileNotFoundError(f"missing {', '.join(missing)}{recipe}")
    return split


def subset_split(split: Split, folder: Path, n_train: int, n_valid: int, n_test: int) -> Split:
    """The first frames of each file (quick runs): new HDF5 files in ``folder``."""
    from gdlphys.data import read_hdf5, write_hdf5

    folder.mkdir(parents=True, exist_ok=True)
    out = Split(folder / "train.h5", folder / "valid.h5", folder / "test.h5")
    for source, target, n in ((split.train, out.train, n_train), (split.valid, out.valid, n_valid), (split.test, out.test, n_test)):
        write_hdf5(target, read_hdf5(source, index=slice(0, n)), method="GFN2-xTB")
    return out


def export_extxyz(h5: Path, xyz: Path) -> int:
    """HDF5 frames -> extxyz with ``REF_energy`` (info) and ``REF_forces`` (arrays), as MACE reads them."""
    import ase.io

    from gdlphys.data import read_hdf5

    frames = []
    for atoms in read_hdf5(h5):
        plain = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        plain.info["REF_energy"] = float(atoms.get_potential_energy())
        plain.arrays["REF_forces"] = np.asarray(atoms.get_forces(), dtype=float)
        frames.append(plain)
    xyz.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(xyz, frames, format="extxyz")
    return len(frames)


def aspirin_molecule() -> Atoms:
    """The first test frame of the dataset, without labels."""
    from gdlphys.data import read_hdf5

    atoms = read_hdf5(aspirin_split().test, index=slice(0, 1))[0]
    return Atoms(atoms.numbers, atoms.positions)


def molecule_box(molecule: Atoms, grid: tuple[int, int, int], gap: float = 2.0) -> Atoms:
    """Copies of ``molecule`` on an ``a x b x c`` periodic grid, each in a cell ``gap`` Å wider than it.

    All copies share one orientation, so none overlap. ``(1, 1, 1)`` is the isolated
    molecule (no cell), as in gas-phase MD.
    """
    if tuple(grid) == (1, 1, 1):
        return molecule.copy()
    extent = np.ptp(molecule.positions, axis=0) + gap
    centred = molecule.positions - molecule.positions.min(axis=0) + gap / 2
    offsets = np.array([(i, j, k) for i in range(grid[0]) for j in range(grid[1]) for k in range(grid[2])]) * extent
    positions = (centred[None, :, :] + offsets[:, None, :]).reshape(-1, 3)
    numbers = np.tile(molecule.numbers, len(offsets))
    return Atoms(numbers, positions, cell=np.diag(np.array(grid) * extent), pbc=True)


def random_atoms(n_atoms: int, seed: int, density: float = WATER_ATOMS_PER_A3) -> tuple[np.ndarray, np.ndarray]:
    """``n_atoms`` uniform random positions in a cube at ``density`` atoms/Å^3: (positions, cell)."""
    side = (n_atoms / density) ** (1 / 3)
    rng = np.random.default_rng(seed + n_atoms)
    return rng.uniform(0.0, side, size=(n_atoms, 3)), np.eye(3) * side

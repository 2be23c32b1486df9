"""The gdlphys HDF5 frame format: versioned, self-describing, ragged, written atomically.

Layout (format_version 1; docs/hdf5-format.md is the full specification)::

    /                   attrs: format="gdlphys-frames", format_version=1, units_*, provenance
    /atoms/numbers      [N] int32         atomic numbers of all frames, concatenated
    /atoms/positions    [N, 3] float      Angstrom
    /atoms/forces       [N, 3] float      eV/Angstrom                 (optional)
    /frames/offsets     [F + 1] int64     atoms of frame k are offsets[k]:offsets[k+1]
    /frames/cell        [F, 3, 3] float   Angstrom, rows are lattice vectors
    /frames/pbc         [F, 3] bool
    /frames/energy      [F] float         eV                          (optional)
    /frames/stress      [F, 6] float      eV/Angstrom^3, Voigt xx yy zz yz xz xy   (optional)
    /frames/dipole      [F, 3] float      e*Angstrom                  (optional)
    /frames/smiles      [F] utf-8 str     molecule each frame came from (optional)
    /frames/has_<label> [F] bool          which frames carry <label>; absent = all of them

Floats are stored in the dtype they came in (float64 from ASE), so round trips are bit-exact.
This module reads and validates; writing is in ``hdf5_writer``, the summary in ``summary``.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase import Atoms

from gdlphys.conversion import frame_to_atoms

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LABELS",
    "UNITS",
    "DataFormatError",
    "FrameReader",
    "read_hdf5",
]

FORMAT_NAME = "gdlphys-frames"
FORMAT_VERSION = 1

# Root attribute -> the unit gdlphys stores, and spellings accepted from other writers.
UNITS = {
    "units_energy": "eV",
    "units_length": "Angstrom",
    "units_forces": "eV/Angstrom",
    "units_stress": "eV/Angstrom^3",
    "units_dipole": "e*Angstrom",
}
_UNIT_SPELLINGS = {
    "units_energy": {"eV"},
    "units_length": {"Angstrom", "Ang", "Å", "A"},
    "units_forces": {"eV/Angstrom", "eV/Ang", "eV/Å", "eV/A"},
    "units_stress": {"eV/Angstrom^3", "eV/Ang^3", "eV/Å^3", "eV/A^3"},
    "units_dipole": {"e*Angstrom", "e*Ang", "e*Å", "e*A", "eÅ"},
}

# Label name -> (group, per-row shape, unit attribute). Per-atom labels live in /atoms.
LABELS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "energy": ("frames", (), "units_energy"),
    "forces": ("atoms", (3,), "units_forces"),
    "stress": ("frames", (6,), "units_stress"),
    "dipole": ("frames", (3,), "units_dipole"),
}
PROVENANCE = ("method", "software", "created", "gdlphys_version")
RESERVED_ATTRS = {"format", "format_version", *UNITS, *PROVENANCE}
_REQUIRED = ("atoms/numbers", "atoms/positions", "frames/offsets", "frames/cell", "frames/pbc")
CHUNK_ROWS = {"atoms": 2048, "frames": 512}
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
UTF8_STRING = h5py.string_dtype("utf-8")


class DataFormatError(ValueError):
    """A data file that gdlphys cannot read, with the file and the problem named."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _validate(f: h5py.File, path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Check a file against the format; return its offsets and the mask of each label present."""
    attrs = f.attrs
    if _plain(attrs.get("format")) != FORMAT_NAME:
        raise DataFormatError(path, f"not a {FORMAT_NAME} file (format attribute is {_plain(attrs.get('format'))!r})")
    try:
        version = int(attrs["format_version"])
    except (KeyError, TypeError, ValueError):
        raise DataFormatError(path, "missing or non-integer format_version attribute") from None
    if version > FORMAT_VERSION:
        raise DataFormatError(
            path, f"format_version {version} is newer than this gdlphys supports ({FORMAT_VERSION}); upgrade gdlphys"
        )
    if version < 1:
        raise DataFormatError(path, f"invalid format_version {version}")
    for name in _REQUIRED:
        if not isinstance(f.get(name), h5py.Dataset):
            raise DataFormatError(path, f"missing required dataset /{name}")
    labels = [name for name, (group, _, _) in LABELS.items() if f"{group}/{name}" in f]
    for unit_attr in ["units_length", *(LABELS[name][2] for name in labels)]:
        unit = _plain(attrs.get(unit_attr))
        if unit is None:
            raise DataFormatError(path, f"missing {unit_attr} attribute")
        if unit not in _UNIT_SPELLINGS[unit_attr]:
            raise DataFormatError(path, f"{unit_attr} is {unit!r}; gdlphys reads only {UNITS[unit_attr]!r}")

    offsets = f["frames/offsets"][()]
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise DataFormatError(path, "/frames/offsets must be a non-decreasing 1-d array starting at 0")
    n_frames, n_atoms = len(offsets) - 1, f["atoms/numbers"].shape[0]
    if offsets[-1] != n_atoms:
        raise DataFormatError(path, f"/frames/offsets ends at {offsets[-1]} but /atoms/numbers has {n_atoms} atoms")
    expected = {
        "atoms/numbers": (n_atoms,),
        "atoms/positions": (n_atoms, 3),
        "frames/cell": (n_frames, 3, 3),
        "frames/pbc": (n_frames, 3),
    }
    for name in labels:
        group, row, _ = LABELS[name]
        expected[f"{group}/{name}"] = ((n_atoms if group == "atoms" else n_frames), *row)
        if f"frames/has_{name}" in f:
            expected[f"frames/has_{name}"] = (n_frames,)
    if "frames/smiles" in f:
        expected["frames/smiles"] = (n_frames,)
    for name, shape in expected.items():
        if not isinstance(f[name], h5py.Dataset) or f[name].shape != shape:
            found = getattr(f[name], "shape", None)
            raise DataFormatError(
                path, f"/{name} has shape {found}, expected {shape} ({n_frames} frames, {n_atoms} atoms)"
            )
    masks = {}
    for name in labels:
        mask_name = f"frames/has_{name}"
        masks[name] = f[mask_name][()].astype(bool) if mask_name in f else np.ones(n_frames, dtype=bool)
    return offsets.astype(np.int64), masks


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise DataFormatError(path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None


class FrameReader:
    """Lazy random access to the frames of a gdlphys HDF5 file.

    ``reader[k]`` reads only frame k: a dict of numpy arrays ``numbers [n] int64,
    positions [n, 3], cell [3, 3], pbc [3] bool`` and, where stored for that frame,
    ``energy [] , forces [n, 3], stress [6], dipole [3]``.

    The file is validated at construction, then closed; it is reopened on first
    access in each process, and the handle is dropped when pickled, so a reader
    can be shipped to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open_h5(self.path) as f:
            try:
                self._offsets, self._masks = _validate(f, self.path)
                self.attrs: dict[str, Any] = {key: _plain(value) for key, value in f.attrs.items()}
            except OSError as exc:  # e.g. a damaged chunk
                raise DataFormatError(self.path, f"cannot read ({exc})") from None
            self._has_smiles = "frames/smiles" in f
        self.fields: tuple[str, ...] = tuple(self._masks)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._datasets: dict[str, h5py.Dataset] = {}

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def num_atoms(self) -> np.ndarray:
        """[n_frames] int64: atoms per frame (for batching by size without reading frames)."""
        return np.diff(self._offsets)

    def mask(self, field: str) -> np.ndarray:
        """[n_frames] bool: which frames carry the label ``field``."""
        return self._masks[field].copy()

    def has(self, field: str, k: int) -> bool:
        """Whether frame k carries the label ``field``."""
        return field in self._masks and bool(self._masks[field][self._index(k)])

    def _index(self, k: int) -> int:
        k = operator.index(k)
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"frame {k} out of range for {self.path} with {n} frames")
        return k

    def _dataset(self, name: str) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():  # first use, or inherited across fork
            self._file = open_h5(self.path)
            self._pid = os.getpid()
            self._datasets = {}
        if name not in self._datasets:
            self._datasets[name] = self._file[name]
        return self._datasets[name]

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        k = self._index(k)
        start, stop = int(self._offsets[k]), int(self._offsets[k + 1])
        try:
            frame = {
                "numbers": self._dataset("atoms/numbers")[start:stop].astype(np.int64),
                "positions": self._dataset("atoms/positions")[start:stop],
                "cell": self._dataset("frames/cell")[k],
                "pbc": self._dataset("frames/pbc")[k].astype(bool),
            }
            for name in self.fields:
                if self._masks[name][k]:
                    group = LABELS[name][0]
                    rows = slice(start, stop) if group == "atoms" else k
                    frame[name] = self._dataset(f"{group}/{name}")[rows]
        except OSError as exc:
            raise DataFormatError(self.path, f"cannot read frame {k}: {exc}") from None
        return frame

    def elements(self, block: int = 1 << 22) -> list[int]:
        """The atomic numbers present in the file, sorted (read in blocks: no whole-column copy)."""
        column = self._dataset("atoms/numbers")
        seen: set[int] = set()
        for start in range(0, column.shape[0], block):
            seen.update(int(z) for z in np.unique(column[start : start + block]))
        return sorted(seen)

    def smiles(self, k: int) -> str | None:
        """The SMILES frame k was generated from, if the file records one."""
        if not self._has_smiles:
            return None
        return self._dataset("frames/smiles").asstr()[self._index(k)] or None

    def atoms(self, k: int) -> Atoms:
        """Frame k as ase.Atoms with a SinglePointCalculator holding its labels."""
        return frame_to_atoms(self[k], self.smiles(k))

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid, self._datasets = None, None, {}

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _pid=None, _datasets={})
        return state

    def __repr__(self) -> str:
        return f"FrameReader({str(self.path)!r}, frames={len(self)}, fields={self.fields})"




def _frame_indices(index: Any, n: int) -> list[int]:
    if isinstance(index, str):
        from ase.io.formats import string2index

        index = string2index(index)
    if isinstance(index, slice):
        return list(range(n))[index]
    if isinstance(index, Iterable):
        return [operator.index(i) for i in index]
    return [operator.index(index)]


def read_hdf5(path: str | os.PathLike, index: Any = None) -> list[Atoms]:
    """Read frames as ase.Atoms whose SinglePointCalculator returns the stored labels bit for bit.

    ``index``: None (all), an int, a slice, a sequence of ints, or an ASE index string like ``"::10"``.
    """
    reader = FrameReader(path)
    n = len(reader)
    if index is not None and not (isinstance(index, str) and index == ":"):
        with reader:
            return [reader.atoms(k) for k in _frame_indices(index, n)]
    with open_h5(reader.path) as f:  # everything: one bulk read per dataset
        try:
            data = {name: f[name][()] for name in _REQUIRED}
            for name in reader.fields:
                data[name] = f[f"{LABELS[name][0]}/{name}"][()]
            smiles = f["frames/smiles"].asstr()[()] if "frames/smiles" in f else None
        except OSError as exc:
            raise DataFormatError(reader.path, f"cannot read: {exc}") from None
    offsets, frames = reader._offsets, []
    for k in range(n):
        start, stop = offsets[k], offsets[k + 1]
        frame = {
            "numbers": data["atoms/numbers"][start:stop],
            "positions": data["atoms/positions"][start:stop],
            "cell": data["frames/cell"][k],
            "pbc": data["frames/pbc"][k],
        }
        for name in reader.fields:
            if reader._masks[name][k]:
                frame[name] = data[name][start:stop] if LABELS[name][0] == "atoms" else data[name][k]
        frames.append(frame_to_atoms(frame, smiles[k] if smiles is not None else None))
    return frames

"""Non-finite numbers in frames: found, named (file, frame, key, atom) and kept out of files and training.

One NaN force component trains a potential that returns NaN everywhere, so a frame whose
positions, cell or labels hold a NaN or an infinity is refused where frames are made
(the writer, ``convert``, labelling) and where they are read for training. The same
keys are checked everywhere, in this order: the first non-finite one of a frame names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gdlphys.data.hdf5 import LABELS, DataFormatError, FrameReader, open_h5

__all__ = [
    "BAD_FRAMES", "CHECKED", "NonFinite", "NonFiniteError", "SkippedFrameWarning", "check_bad_frames",
    "check_file_finite", "file_nonfinite", "first_nonfinite",
]

BAD_FRAMES = ("error", "skip")  # what a writer does with a frame holding a non-finite number
# key -> whether its rows are atoms; the order names the first bad key of a frame
CHECKED: dict[str, bool] = {"positions": True, "cell": False, "energy": False, "forces": True, "stress": False, "dipole": False}


class NonFinite(NamedTuple):
    """A non-finite number of one frame: where (file, frame, key, atom of a per-atom key) and what."""

    path: str
    frame: int
    key: str
    atom: int | None  # None for a per-frame key (cell, energy, stress, dipole)
    value: float

    @property
    def what(self) -> str:
        """The key (and atom) and the value, without file and frame: 'forces of atom 7 is not finite (nan)'."""
        key = f"{self.key} of atom {self.atom}" if self.atom is not None else self.key
        return f"{key} is not finite ({self.value})"

    def __str__(self) -> str:
        return f"{self.path}: frame {self.frame}: {self.what}"


class NonFiniteError(DataFormatError):
    """A frame holds a NaN or an infinity; ``bad`` says where."""

    def __init__(self, bad: NonFinite, hint: str = ""):
        self.bad = bad
        super().__init__(bad.path, str(bad).removeprefix(f"{bad.path}: ") + hint)


class SkippedFrameWarning(UserWarning):
    """A frame left out because it holds a non-finite number (``bad_frames="skip"``)."""


def check_bad_frames(bad_frames: str) -> str:
    if bad_frames not in BAD_FRAMES:
        raise ValueError(f"bad_frames must be one of {', '.join(map(repr, BAD_FRAMES))}, got {bad_frames!r}")
    return bad_frames


def _first_bad(value: Any, per_atom: bool) -> tuple[int | None, float] | None:
    """(atom or None, the value) of the first non-finite number of one key, or None."""
    array = np.asarray(value, dtype=np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return None
    if per_atom:
        rows = array.reshape(len(array), -1)
        atom = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        return atom, float(rows[atom][~np.isfinite(rows[atom])][0])
    return None, float(array[~finite].flat[0])


def first_nonfinite(frame: Mapping[str, Any], path: str | os.PathLike = "", k: int = 0) -> NonFinite | None:
    """The first non-finite number of frame ``k`` (a mapping with any of :data:`CHECKED`), or None."""
    for key, per_atom in CHECKED.items():
        value = frame.get(key)
        if value is None:
            continue
        found = _first_bad(value, per_atom)
        if found is not None:
            return NonFinite(str(path), k, key, *found)
    return None


def _bad_rows(dataset, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``dataset`` holding a non-finite number, and the first such number of each (read in blocks)."""
    rows, values = [], []
    for start in range(0, dataset.shape[0], block_rows):
        block = np.asarray(dataset[start : start + block_rows], dtype=np.float64).reshape(-1, int(np.prod(dataset.shape[1:])))
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if len(bad):
            first = (~np.isfinite(block[bad])).argmax(axis=1)
            rows.append(bad + start)
            values.append(block[bad, first])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(values)


def file_nonfinite(path: str | os.PathLike, *, block_rows: int = 1 << 20) -> list[NonFinite]:
    """The first non-finite number of every frame of a gdlphys HDF5 file that holds one (labels
    only where the frame carries them: a missing label is stored as NaN). Whole columns are read
    in blocks of ``block_rows`` rows, never frame by frame."""
    reader = FrameReader(path)
    offsets = np.concatenate([[0], np.cumsum(reader.num_atoms)])
    names = {"positions": "atoms/positions", "cell": "frames/cell"}
    names.update({name: f"{LABELS[name][0]}/{name}" for name in reader.fields})
    found = []  # (frame, key order, atom or -1, value) arrays per key
    with open_h5(reader.path) as f:
        try:
            for order, (key, per_atom) in enumerate(CHECKED.items()):
                if key not in names:
                    continue
                rows, values = _bad_rows(f[names[key]], block_rows)
                frames = np.searchsorted(offsets, rows, side="right") - 1 if per_atom else rows
                atoms = rows - offsets[frames] if per_atom else np.full(len(rows), -1)
                keep = reader.mask(key)[frames] if key in reader.fields else np.ones(len(rows), bool)
                found.append((frames[keep], np.full(keep.sum(), order), atoms[keep], values[keep]))
        except OSError as exc:
            raise DataFormatError(reader.path, f"cannot read: {exc}") from None
    if not found:
        return []
    frames, order, atoms, values = (np.concatenate(column) for column in zip(*found))
    first = np.lexsort((atoms, order, frames))  # by frame, then key, then atom
    frames, order, atoms, values = frames[first], order[first], atoms[first], values[first]
    one = np.flatnonzero(np.diff(frames, prepend=-1) != 0)
    keys = list(CHECKED)
    return [
        NonFinite(str(reader.path), int(frames[i]), keys[order[i]], None if atoms[i] < 0 else int(atoms[i]), float(values[i]))
        for i in one
    ]


def check_file_finite(path: str | os.PathLike) -> None:
    """Raise :class:`NonFiniteError` naming the first frame of ``path`` that holds a NaN or an infinity."""
    bad = file_nonfinite(path)
    if bad:
        more = f" ({len(bad)} frames hold non-finite numbers)" if len(bad) > 1 else ""
        hint = (
            f"{more}; written by an older gdlphys? Rewrite it without them: "
            f"write_hdf5(new, read_hdf5('{Path(path).name}'), bad_frames='skip')"
        )
        raise NonFiniteError(bad[0], hint)

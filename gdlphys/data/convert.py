"""Convert anything ``ase.io`` reads (extxyz, traj, db, ...) into the gdlphys HDF5 format.

Labels are looked up per frame. With a key given (``energy_key="REF_energy"``)
the key must be in every frame, searched in ``atoms.calc.results``,
``atoms.info`` (energy, stress, dipole) or ``atoms.arrays`` (forces); a missing
one is an error naming the file, frame and key. Without a key the standard
name (``energy``, ``forces``, ``stress``, ``dipole``) is taken where present.
Values are copied, never recomputed, so a round trip is exact to the bit.
A frame whose positions, cell or labels hold a NaN or an infinity is an error
naming the input file, frame, key and atom, or is skipped (``bad_frames="skip"``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from gdlphys.conversion import stress_to_voigt
from gdlphys.data.finite import NonFinite, NonFiniteError, SkippedFrameWarning, check_bad_frames, first_nonfinite
from gdlphys.data.hdf5 import DataFormatError
from gdlphys.data.hdf5_writer import FrameWriter

__all__ = ["convert", "frame_labels"]


def _lookup(atoms: Atoms, name: str, key: str) -> Any:
    """The value stored under ``key`` for label ``name``, or None."""
    results = atoms.calc.results if atoms.calc is not None else {}
    if key in results:
        return results[key]
    store = atoms.arrays if name == "forces" else atoms.info
    return store.get(key)


def frame_labels(atoms: Atoms, keys: dict[str, str | None]) -> dict[str, np.ndarray | float]:
    """The labels of one frame; ``keys`` maps label name -> key (None: the standard name, optional).

    Raises ValueError naming the label and key when a requested key is missing or malformed.
    """
    labels: dict[str, Any] = {}
    for name, key in keys.items():
        value = _lookup(atoms, name, key or name)
        if value is None:
            if key is not None:
                places = "atoms.arrays" if name == "forces" else "atoms.info"
                raise ValueError(f"{name} key {key!r} not found in {places} or calculator results")
            continue
        try:
            if name == "stress":
                value = stress_to_voigt(value)
            elif name == "energy":
                value = float(np.asarray(value).reshape(()))
            else:
                value = np.asarray(value, dtype=np.float64)
                expected = (len(atoms), 3) if name == "forces" else (3,)
                if value.shape != expected:
                    raise ValueError(f"shape {value.shape}, expected {expected}")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name} (key {key or name!r}): {exc}") from None
        labels[name] = value
    return labels


def convert(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    output: str | os.PathLike,
    *,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    dipole_key: str | None = None,
    index: str = ":",
    format: str | None = None,
    method: str | None = None,
    software: str | None = None,
    bad_frames: str = "error",
    on_skip: Callable[[NonFinite], None] | None = None,
) -> int:
    """Convert the frames of ``inputs`` (read with ``ase.io``) into one HDF5 file; return the frame count.

    ``index`` selects frames of each input, as in ``ase.io.read``; ``format`` is
    passed to ASE when it cannot tell from the file name. The output is written
    atomically: on any error it is left as it was. A frame holding a NaN or an
    infinity is an error (``bad_frames="error"``) or is left out (``"skip"``) and
    reported to ``on_skip`` (default: a :class:`SkippedFrameWarning`), naming the input.
    """
    check_bad_frames(bad_frames)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("no input files given")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    keys = {"energy": energy_key, "forces": forces_key, "stress": stress_key, "dipole": dipole_key}
    attrs = {"converted_from": [p.name for p in paths]}
    with FrameWriter(output, method=method, software=software, attrs=attrs) as writer:
        for path in paths:
            for k, atoms in enumerate(ase.io.iread(path, index=index, format=format)):
                try:
                    labels = frame_labels(atoms, keys)
                except ValueError as exc:
                    raise DataFormatError(path, f"frame {k}: {exc}") from None
                bad = first_nonfinite({"positions": atoms.positions, "cell": atoms.cell.array, **labels}, path, k)
                if bad is not None:
                    if bad_frames == "error":
                        raise NonFiniteError(bad)
                    if on_skip is not None:
                        on_skip(bad)
                    else:
                        warnings.warn(f"skipped {bad}", SkippedFrameWarning, stacklevel=2)
                    continue
                frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                if labels:
                    frame.calc = SinglePointCalculator(frame, **labels)
                if isinstance(atoms.info.get("smiles"), str):
                    frame.info["smiles"] = atoms.info["smiles"]
                writer.append(frame)
        return writer.n_frames

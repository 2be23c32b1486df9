"""Writing the gdlphys HDF5 frame format: :class:`FrameWriter` streams frames in, atomically.

The layout is specified in :mod:`gdlphys.data.hdf5` (and docs/hdf5-format.md).
"""

from __future__ import annotations

import datetime
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase import Atoms

from gdlphys.conversion import stress_to_voigt
from gdlphys.data.finite import NonFinite, NonFiniteError, SkippedFrameWarning, check_bad_frames, first_nonfinite
from gdlphys.data.hdf5 import (
    CHUNK_ROWS,
    COMPRESSION,
    FORMAT_NAME,
    FORMAT_VERSION,
    LABELS,
    RESERVED_ATTRS,
    UNITS,
    UTF8_STRING,
    DataFormatError,
    FrameReader,
)
from gdlphys.io_utils import AtomicWrite

__all__ = ["FrameWriter", "write_hdf5"]


def _gdlphys_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gdlphys")
    except PackageNotFoundError:
        return "unknown"


def _stale(atoms: Atoms) -> bool:
    """Whether the calculator's results belong to other positions/cell (exact check first: ASE's is slow)."""
    ref = getattr(atoms.calc, "atoms", None)
    if ref is None:
        return False
    if (
        len(ref) == len(atoms)
        and np.array_equal(ref.positions, atoms.positions, equal_nan=True)  # NaN positions: named later, not "stale"
        and np.array_equal(ref.numbers, atoms.numbers)
        and np.array_equal(ref.cell.array, atoms.cell.array, equal_nan=True)
        and np.array_equal(ref.pbc, atoms.pbc)
    ):
        return False
    return bool(atoms.calc.check_state(atoms, tol=1e-15))


def _frame_from_atoms(atoms: Atoms, k: int) -> dict[str, Any]:
    """The arrays of one frame, labels taken from ``atoms.calc.results``."""
    if not isinstance(atoms, Atoms):
        raise TypeError(f"frame {k}: expected ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    frame: dict[str, Any] = {  # copies: the caller may move the atoms on (MD) before the buffer is written
        "numbers": np.array(atoms.numbers),
        "positions": np.array(atoms.positions),
        "cell": np.array(atoms.cell.array),
        "pbc": np.array(atoms.pbc),
        "smiles": atoms.info.get("smiles"),
    }
    results = atoms.calc.results if atoms.calc is not None else {}
    if results and _stale(atoms):
        raise ValueError(f"frame {k}: the calculator's results are stale (the atoms changed after they were computed)")
    for name, (group, row, _) in LABELS.items():
        value = results.get(name)
        if value is None:
            continue
        value = np.array(value)
        if name == "stress" and value.shape == (3, 3):
            value = stress_to_voigt(value)
        shape = (n, *row) if group == "atoms" else row
        if value.shape != shape:
            raise ValueError(f"frame {k}: {name} has shape {value.shape}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float64)
        frame[name] = value
    return frame


def _create_column(
    f: h5py.File, name: str, data: np.ndarray | None = None, *, shape: tuple = (), dtype: Any = None, fill: Any = None
) -> h5py.Dataset:
    """A dataset resizable along its first axis, chunked by rows and compressed."""
    shape = data.shape if data is not None else shape
    chunks = (CHUNK_ROWS[name.split("/")[0]], *shape[1:])
    extra = {"fillvalue": fill} if fill is not None else {}
    return f.create_dataset(
        name, shape=shape, dtype=dtype, data=data, maxshape=(None, *shape[1:]), chunks=chunks, **COMPRESSION, **extra
    )


class FrameWriter:
    """Streams frames into a gdlphys HDF5 file, atomically.

    Frames go to a temporary file next to ``path`` that replaces ``path`` only at
    ``close()`` (or at the end of a ``with`` block without exception): a crash or
    kill leaves ``path`` as it was. ``append=True`` continues an existing file
    (copied to the temporary name first).

    A frame whose positions, cell or labels hold a NaN or an infinity is refused with
    ``bad_frames="error"`` (a ValueError naming this file, the frame, the key and the atom;
    nothing of it is written) or, with ``"skip"``, left out, recorded in ``skipped`` and
    warned about (:class:`SkippedFrameWarning`). Frame numbers count the frames given to
    the writer (after those of an appended file), skipped ones included.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        method: str | None = None,
        software: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        append: bool = False,
        buffer_frames: int = 1024,
        bad_frames: str = "error",
    ):
        self.path = Path(path)
        self.bad_frames = check_bad_frames(bad_frames)
        self.skipped: list[NonFinite] = []
        self._buffer_frames = max(1, int(buffer_frames))
        self._buffer: list[dict[str, Any]] = []
        self._pending = AtomicWrite(self.path)
        reserved = RESERVED_ATTRS.intersection(attrs or {})
        if reserved:
            raise ValueError(f"attrs {sorted(reserved)} are reserved by the format; pass method=/software= instead")
        try:
            if append and self.path.exists():
                reader = FrameReader(self.path)  # validates
                shutil.copyfile(self.path, self._pending.tmp)
                self._file = h5py.File(self._pending.tmp, "r+")
                self._n_frames, self._n_atoms = len(reader), int(reader._offsets[-1])
                self._check_appendable()
                for key, value in (("method", method), ("software", software)):
                    old = reader.attrs.get(key, "unknown")
                    if value is not None and old not in ("unknown", value):
                        raise ValueError(f"{self.path} was made with {key}={old!r}; cannot append {value!r} frames")
            else:
                self._file = h5py.File(self._pending.tmp, "w")
                self._file.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **UNITS})
                self._file.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                self._file.attrs["gdlphys_version"] = _gdlphys_version()
                self._n_frames, self._n_atoms = 0, 0
                _create_column(self._file, "frames/offsets", np.zeros(1, np.int64))
            for key, value in (("method", method), ("software", software)):
                if value is not None or key not in self._file.attrs:
                    self._file.attrs[key] = value if value is not None else "unknown"
            for key, value in (attrs or {}).items():
                try:
                    self._file.attrs[key] = value
                except TypeError as exc:
                    raise ValueError(f"attribute {key!r}: HDF5 cannot store {type(value).__name__} ({exc})") from None
        except BaseException:
            self.abort()
            raise
        self._offered = self._n_frames  # the number of the next frame given, skipped ones counted

    def _check_appendable(self) -> None:
        """Datasets must be resizable; labels stored without a mask get an all-true one."""
        for group in ("atoms", "frames"):
            for name, ds in self._file[group].items():
                if ds.maxshape[0] is not None:
                    raise DataFormatError(self.path, f"/{group}/{name} is not resizable, so frames cannot be appended")
        for name, (group, _, _) in LABELS.items():
            if f"{group}/{name}" in self._file and f"frames/has_{name}" not in self._file:
                _create_column(self._file, f"frames/has_{name}", np.ones(self._n_frames, bool))

    @property
    def n_frames(self) -> int:
        """Frames appended so far (written or buffered)."""
        return self._n_frames + len(self._buffer)

    @property
    def closed(self) -> bool:
        return self._pending.done

    def append(self, atoms: Atoms) -> None:
        if self.closed:
            raise ValueError(f"writer for {self.path} is closed")
        k, self._offered = self._offered, self._offered + 1
        frame = _frame_from_atoms(atoms, k)
        bad = first_nonfinite(frame, self.path, k)
        if bad is not None:
            if self.bad_frames == "error":
                raise NonFiniteError(bad, "; bad_frames='skip' leaves such frames out")
            self.skipped.append(bad)
            warnings.warn(f"skipped {bad}", SkippedFrameWarning, stacklevel=2)
            return
        self._buffer.append(frame)
        if len(self._buffer) >= self._buffer_frames:
            self._write_buffer()

    def extend(self, frames: Iterable[Atoms]) -> None:
        for atoms in frames:
            self.append(atoms)

    def flush(self) -> None:
        """Write buffered frames to the temporary file (``path`` changes only at close)."""
        self._write_buffer()
        self._file.flush()

    def _dataset(self, name: str, row: tuple[int, ...], dtype: Any, fill: Any) -> h5py.Dataset:
        if name in self._file:
            return self._file[name]
        length = self._n_atoms if name.startswith("atoms/") else self._n_frames
        return _create_column(self._file, name, shape=(length, *row), dtype=dtype, fill=fill)

    def _append_rows(self, name: str, rows: np.ndarray, fill: Any = None) -> None:
        ds = self._dataset(name, rows.shape[1:], rows.dtype, fill)
        if ds.dtype != rows.dtype and not np.can_cast(rows.dtype, ds.dtype, "safe"):
            raise ValueError(f"/{name} holds {ds.dtype}; cannot append {rows.dtype} values without losing precision")
        start = ds.shape[0]
        ds.resize(start + len(rows), axis=0)
        if len(rows):
            ds[start:] = rows

    def _write_buffer(self) -> None:
        frames, self._buffer = self._buffer, []
        if not frames:
            return
        try:
            self._write_frames(frames)
        except BaseException:
            self.abort()  # a half-written block would leave the datasets out of step
            raise

    def _write_frames(self, frames: list[dict[str, Any]]) -> None:
        counts = np.array([len(fr["numbers"]) for fr in frames], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        self._append_rows("atoms/numbers", np.concatenate([fr["numbers"] for fr in frames]).astype(np.int32))
        self._append_rows("atoms/positions", np.concatenate([fr["positions"] for fr in frames]).reshape(-1, 3))
        offsets = self._file["frames/offsets"]
        offsets.resize(self._n_frames + 1 + len(frames), axis=0)
        offsets[self._n_frames + 1 :] = self._n_atoms + starts[1:]
        self._append_rows("frames/cell", np.stack([fr["cell"] for fr in frames]))
        self._append_rows("frames/pbc", np.stack([fr["pbc"] for fr in frames]).astype(bool), fill=False)
        for name, (group, row, _) in LABELS.items():
            present = np.array([name in fr for fr in frames])
            if not present.any() and f"{group}/{name}" not in self._file:
                continue
            dtypes = [fr[name].dtype for fr in frames if name in fr]
            existing = self._file.get(f"{group}/{name}")
            dtype = existing.dtype if existing is not None else np.result_type(*dtypes)
            if not all(np.can_cast(d, dtype, "safe") for d in dtypes):
                raise ValueError(f"/{group}/{name} holds {dtype}; cannot append {dtypes} without losing precision")
            n_rows = int(starts[-1]) if group == "atoms" else len(frames)
            block = np.full((n_rows, *row), np.nan, dtype=dtype)
            for i, fr in enumerate(frames):
                if name in fr and group == "atoms":
                    block[starts[i] : starts[i + 1]] = fr[name]
                elif name in fr:
                    block[i] = fr[name]
            self._append_rows(f"{group}/{name}", block, fill=np.nan)
            self._append_rows(f"frames/has_{name}", present, fill=False)
        smiles = [fr["smiles"] for fr in frames]
        if any(smiles) or "frames/smiles" in self._file:
            self._append_rows("frames/smiles", np.array([s or "" for s in smiles], dtype=UTF8_STRING))
        self._n_frames += len(frames)
        self._n_atoms += int(starts[-1])

    def _ensure_required(self) -> None:
        """An empty file still has every required dataset."""
        self._dataset("atoms/numbers", (), np.int32, None)
        self._dataset("atoms/positions", (3,), np.float64, None)
        self._dataset("frames/cell", (3, 3), np.float64, None)
        self._dataset("frames/pbc", (3,), bool, False)

    def close(self) -> Path:
        """Write what is buffered and move the file onto ``path`` atomically."""
        if self.closed:
            return self.path
        try:
            self._write_buffer()
            self._ensure_required()
            self._file.close()
            return self._pending.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written by this writer; ``path`` keeps what it had."""
        file = getattr(self, "_file", None)
        if file is not None and file.id.valid:
            file.close()
        self._pending.discard()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # never commit a file nobody closed
        if hasattr(self, "_pending") and not self._pending.done:
            self.abort()


def write_hdf5(
    path: str | os.PathLike,
    frames: Iterable[Atoms],
    *,
    method: str | None = None,
    software: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    bad_frames: str = "error",
) -> int:
    """Write frames (labels from ``atoms.calc.results``) to ``path`` atomically; return the frame count.

    A frame holding a NaN or an infinity fails the write (``bad_frames="error"``: ``path`` is left
    as it was) or is left out with a :class:`SkippedFrameWarning` naming it (``"skip"``)."""
    with FrameWriter(path, method=method, software=software, attrs=attrs, bad_frames=bad_frames) as writer:
        writer.extend(frames)
        return writer.n_frames

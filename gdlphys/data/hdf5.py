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
"""

from __future__ import annotations

import datetime
import operator
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from gdlphys.io_utils import AtomicWrite

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LABELS",
    "UNITS",
    "DataFormatError",
    "FrameReader",
    "FrameWriter",
    "format_info",
    "info",
    "read_hdf5",
    "write_hdf5",
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
_PROVENANCE = ("method", "software", "created", "gdlphys_version")
_RESERVED_ATTRS = {"format", "format_version", *UNITS, *_PROVENANCE}
_REQUIRED = ("atoms/numbers", "atoms/positions", "frames/offsets", "frames/cell", "frames/pbc")
_CHUNK_ROWS = {"atoms": 2048, "frames": 512}
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_STRING = h5py.string_dtype("utf-8")


class DataFormatError(ValueError):
    """A data file that gdlphys cannot read, with the file and the problem named."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _gdlphys_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gdlphys")
    except PackageNotFoundError:
        return "unknown"


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- reading


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


def _open_h5(path: Path, mode: str = "r") -> h5py.File:
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
        with _open_h5(self.path) as f:
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
            self._file = _open_h5(self.path)
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

    def smiles(self, k: int) -> str | None:
        """The SMILES frame k was generated from, if the file records one."""
        if not self._has_smiles:
            return None
        return self._dataset("frames/smiles").asstr()[self._index(k)] or None

    def atoms(self, k: int) -> Atoms:
        """Frame k as ase.Atoms with a SinglePointCalculator holding its labels."""
        return _to_atoms(self[k], self.smiles(k))

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


def _to_atoms(frame: Mapping[str, np.ndarray], smiles: str | None = None) -> Atoms:
    atoms = Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])
    results: dict[str, Any] = {name: frame[name] for name in LABELS if name in frame}
    if "energy" in results:
        results["energy"] = float(results["energy"])
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    if smiles:
        atoms.info["smiles"] = smiles
    return atoms


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
    with _open_h5(reader.path) as f:  # everything: one bulk read per dataset
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
        frames.append(_to_atoms(frame, smiles[k] if smiles is not None else None))
    return frames


# --------------------------------------------------------------------------- writing


def _stale(atoms: Atoms) -> bool:
    """Whether the calculator's results belong to other positions/cell (exact check first: ASE's is slow)."""
    ref = getattr(atoms.calc, "atoms", None)
    if ref is None:
        return False
    if (
        len(ref) == len(atoms)
        and np.array_equal(ref.positions, atoms.positions)
        and np.array_equal(ref.numbers, atoms.numbers)
        and np.array_equal(ref.cell.array, atoms.cell.array)
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
            value = full_3x3_to_voigt_6_stress(value)
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
    chunks = (_CHUNK_ROWS[name.split("/")[0]], *shape[1:])
    extra = {"fillvalue": fill} if fill is not None else {}
    return f.create_dataset(
        name, shape=shape, dtype=dtype, data=data, maxshape=(None, *shape[1:]), chunks=chunks, **_COMPRESSION, **extra
    )


class FrameWriter:
    """Streams frames into a gdlphys HDF5 file, atomically.

    Frames go to a temporary file next to ``path`` that replaces ``path`` only at
    ``close()`` (or at the end of a ``with`` block without exception): a crash or
    kill leaves ``path`` as it was. ``append=True`` continues an existing file
    (copied to the temporary name first).
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
    ):
        self.path = Path(path)
        self._buffer_frames = max(1, int(buffer_frames))
        self._buffer: list[dict[str, Any]] = []
        self._pending = AtomicWrite(self.path)
        reserved = _RESERVED_ATTRS.intersection(attrs or {})
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
        self._buffer.append(_frame_from_atoms(atoms, self.n_frames))
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
            self._append_rows("frames/smiles", np.array([s or "" for s in smiles], dtype=_STRING))
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
) -> int:
    """Write frames (labels from ``atoms.calc.results``) to ``path`` atomically; return the frame count."""
    with FrameWriter(path, method=method, software=software, attrs=attrs) as writer:
        writer.extend(frames)
        return writer.n_frames


# --------------------------------------------------------------------------- summary


def info(path: str | os.PathLike, *, block_rows: int = 1 << 20) -> dict[str, Any]:
    """A JSON-able summary of a frame file, read in blocks (bounded memory on big files)."""
    reader = FrameReader(path)
    n_atoms = reader.num_atoms
    counts = np.zeros(119, dtype=np.int64)
    summary: dict[str, Any] = {"path": str(reader.path), "format_version": reader.attrs.get("format_version")}
    summary["n_frames"] = len(reader)
    summary["n_atoms"] = {
        "total": int(n_atoms.sum()),
        "min": int(n_atoms.min()) if len(n_atoms) else 0,
        "mean": float(n_atoms.mean()) if len(n_atoms) else 0.0,
        "max": int(n_atoms.max()) if len(n_atoms) else 0,
    }
    summary["fields"] = {name: int(mask.sum()) for name, mask in reader._masks.items()}
    with _open_h5(reader.path) as f:
        numbers = f["atoms/numbers"]
        for start in range(0, numbers.shape[0], block_rows):
            block = numbers[start : start + block_rows]
            counts += np.bincount(block.astype(np.int64), minlength=len(counts))[: len(counts)]
        if "energy" in reader.fields:
            mask = reader._masks["energy"]
            energy = f["frames/energy"][()][mask]
            per_atom = energy[n_atoms[mask] > 0] / n_atoms[mask][n_atoms[mask] > 0]
            summary["energy"] = {
                "min": float(energy.min()) if energy.size else None,
                "max": float(energy.max()) if energy.size else None,
                "mean_per_atom": float(per_atom.mean()) if per_atom.size else None,
            }
        if "forces" in reader.fields:
            atom_mask = np.repeat(reader._masks["forces"], n_atoms)
            forces, total, count = f["atoms/forces"], 0.0, 0
            for start in range(0, forces.shape[0], block_rows):
                block = forces[start : start + block_rows][atom_mask[start : start + block_rows]]
                total += float(np.square(block, dtype=np.float64).sum())
                count += block.size
            summary["forces_rms"] = float(np.sqrt(total / count)) if count else None
    from ase.data import chemical_symbols

    summary["elements"] = {chemical_symbols[z]: int(c) for z, c in enumerate(counts) if c}
    summary["units"] = {key[len("units_") :]: reader.attrs.get(key) for key in UNITS}
    summary["provenance"] = {key: reader.attrs.get(key) for key in _PROVENANCE}
    extra = {k: v for k, v in reader.attrs.items() if k not in _RESERVED_ATTRS}
    summary["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in extra.items()}
    return summary


def format_info(summary: Mapping[str, Any]) -> str:
    """The summary from :func:`info` as readable text (what ``gdlphys data info`` prints)."""
    n_atoms = summary["n_atoms"]
    lines = [
        f"file        {summary['path']} (gdlphys-frames v{summary['format_version']})",
        f"frames      {summary['n_frames']}",
        f"atoms       {n_atoms['total']} total; per frame min {n_atoms['min']},"
        f" mean {n_atoms['mean']:.1f}, max {n_atoms['max']}",
        "elements    " + (", ".join(f"{el}: {c}" for el, c in summary["elements"].items()) or "none"),
        "fields      " + (", ".join(f"{name} ({n} frames)" for name, n in summary["fields"].items()) or "none"),
    ]
    energy = summary.get("energy")
    if energy and energy["min"] is not None:
        lines.append(
            f"energy      {energy['min']:.6g} .. {energy['max']:.6g} {summary['units']['energy']}"
            f"; mean per atom {energy['mean_per_atom']:.6g}"
        )
    if summary.get("forces_rms") is not None:
        lines.append(f"forces RMS  {summary['forces_rms']:.6g} {summary['units']['forces']}")
    lines.append("units       " + ", ".join(f"{k}: {v}" for k, v in summary["units"].items()))
    lines.append("provenance  " + ", ".join(f"{k}: {v}" for k, v in summary["provenance"].items()))
    for key, value in summary["attrs"].items():
        lines.append(f"attr        {key} = {value}")
    return "\n".join(lines)

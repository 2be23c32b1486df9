"""Data: the HDF5 frame format, converters from ase.io formats, and labelling (SMILES -> frames).

    from gdlphys.data import write_hdf5, read_hdf5, FrameReader
    write_hdf5("frames.h5", frames, method="GFN2-xTB")   # labels from atoms.calc.results
    frames = read_hdf5("frames.h5")                        # list[ase.Atoms], bit-exact
    reader = FrameReader("frames.h5"); reader[k]           # one frame as numpy arrays, lazily

Labelling (``label_smiles``, ``label_atoms``) imports RDKit and tblite, so it is
loaded on first use, keeping ``import gdlphys.data`` light for DataLoader workers.
"""

from __future__ import annotations

from typing import Any

from gdlphys.data.convert import convert
from gdlphys.data.finite import NonFiniteError, SkippedFrameWarning
from gdlphys.data.hdf5 import FORMAT_VERSION, DataFormatError, FrameReader, read_hdf5
from gdlphys.data.hdf5_writer import FrameWriter, write_hdf5
from gdlphys.data.summary import format_info, info

__all__ = [
    "FORMAT_VERSION",
    "DataFormatError",
    "FrameReader",
    "FrameWriter",
    "LabelFailure",
    "LabelResult",
    "NonFiniteError",
    "SkippedFrameWarning",
    "convert",
    "format_info",
    "info",
    "label_atoms",
    "label_smiles",
    "read_hdf5",
    "write_hdf5",
]

_LAZY = {"label_smiles", "label_atoms", "LabelResult", "LabelFailure"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from gdlphys.data import label

        return getattr(label, name)
    raise AttributeError(f"module 'gdlphys.data' has no attribute {name!r}")

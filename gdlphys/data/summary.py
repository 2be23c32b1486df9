"""A summary of a gdlphys HDF5 frame file: :func:`info` (JSON-able) and :func:`format_info` (text)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from gdlphys.data.finite import file_nonfinite
from gdlphys.data.hdf5 import PROVENANCE, RESERVED_ATTRS, UNITS, FrameReader, open_h5

__all__ = ["format_info", "info"]


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
    with open_h5(reader.path) as f:
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
    bad = file_nonfinite(reader.path, block_rows=block_rows)
    summary["non_finite"] = {"frames": len(bad), "first": bad[0].frame if bad else None, "what": bad[0].what if bad else None}
    from ase.data import chemical_symbols

    summary["elements"] = {chemical_symbols[z]: int(c) for z, c in enumerate(counts) if c}
    summary["units"] = {key[len("units_") :]: reader.attrs.get(key) for key in UNITS}
    summary["provenance"] = {key: reader.attrs.get(key) for key in PROVENANCE}
    extra = {k: v for k, v in reader.attrs.items() if k not in RESERVED_ATTRS}
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
    bad = summary.get("non_finite")
    if bad and bad["frames"]:
        lines.append(f"non-finite  {bad['frames']} frames; first: frame {bad['first']}: {bad['what']}")
    lines.append("units       " + ", ".join(f"{k}: {v}" for k, v in summary["units"].items()))
    lines.append("provenance  " + ", ".join(f"{k}: {v}" for k, v in summary["provenance"].items()))
    for key, value in summary["attrs"].items():
        lines.append(f"attr        {key} = {value}")
    return "\n".join(lines)

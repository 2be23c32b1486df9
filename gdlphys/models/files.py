"""Potential files: save and load without unpickling code, and name resolution.

A potential file is ``torch.save`` of a dict holding only tensors and plain Python
values, so it loads with ``torch.load(weights_only=True)``: the architecture config,
species, cutoff, reference energies, units, format version and provenance travel
with the weights.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from gdlphys.io_utils import atomic_write
from gdlphys.models.config import ModelConfig
from gdlphys.models.potential import Potential
from gdlphys.paths import find_shipped, shipped_names
from gdlphys.version import __version__

FORMAT = "gdlphys-potential"
# 2: an atom without neighbours has exactly its reference energy; 3: the model's parts are named
# (model.embedding..., not model.0...). Older files are migrated on load.
FORMAT_VERSION = 3
POTENTIAL_FILENAME = "potential.pt"
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
UNITS = {"energy": "eV", "length": "Angstrom", "forces": "eV/Angstrom", "stress": "eV/Angstrom^3"}


class PotentialFileError(ValueError):
    """A potential file that cannot be loaded: corrupt, foreign, newer, or unsafe."""


def potential_to_dict(potential: Potential, metadata: dict | None = None) -> dict:
    """Plain, weights-only-loadable description of a potential."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gdlphys_version": __version__,
        "config": potential.config.to_dict(),
        "species": list(potential.species),
        "cutoff": potential.cutoff,
        "reference_energies": potential.reference_energies.double().cpu().tolist(),
        "avg_num_neighbors": potential.avg_num_neighbors,
        "dtype": str(potential.dtype).removeprefix("torch."),
        "units": dict(UNITS),
        "metadata": dict(metadata or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in potential.state_dict().items()},
    }


def potential_from_dict(blob: dict, source: str = "<dict>") -> Potential:
    if isinstance(blob, dict) and "pytorch-lightning_version" in blob:
        raise PotentialFileError(
            f"{source} is a Lightning training checkpoint, not a potential file: load the run folder "
            f"or its {POTENTIAL_FILENAME} instead"
        )
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise PotentialFileError(f"{source} is not a gdlphys potential file (no format {FORMAT!r} record)")
    version = blob.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PotentialFileError(f"{source} has an invalid potential format version {version!r}")
    if version > FORMAT_VERSION:
        raise PotentialFileError(
            f"{source} has potential format version {version}; this gdlphys ({__version__}) reads "
            f"up to {FORMAT_VERSION}: upgrade gdlphys"
        )
    units = blob.get("units", {})
    if not isinstance(units, dict) or units.get("energy") != "eV" or units.get("length") != "Angstrom":
        raise PotentialFileError(f"{source} uses units {units}; gdlphys potentials are in eV and Angstrom")
    dtype = blob.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise PotentialFileError(f"{source} has an unsupported dtype {dtype!r} (float32 or float64)")
    try:
        config = ModelConfig.from_dict(blob["config"])
        state = dict(blob["state_dict"])
        # a per-species shift parameter existed up to gdlphys 0.1.0; it adds a constant that
        # the lone-atom anchoring cancels, except in format 1, where it is folded into E0 below
        potential = Potential(
            config, blob["species"], blob["reference_energies"], blob["avg_num_neighbors"], scale=1.0,
            dtype=getattr(torch, dtype),
        )
        if version < 3:
            state = _named_state(state, potential)
        shift = state.pop("model.scale_shift.shift", None)
        potential.load_state_dict(state)
        if version < 2:
            _anchor_version_1(potential, shift)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        reason = f"missing field {err}" if isinstance(err, KeyError) else str(err).strip().splitlines()[0]
        raise PotentialFileError(f"{source} is damaged or inconsistent: {reason}") from err
    potential.metadata = dict(blob.get("metadata") or {})
    return potential


def _named_state(state: dict, potential: Potential) -> dict:
    """Keys of files before format 3 (``model.<index>.``) renamed to the parts' names."""
    names = [name for name, _ in potential.model.named_children()]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "model" and parts[1].isdigit():
            parts[1] = names[int(parts[1])]
        renamed[".".join(parts)] = value
    return renamed


def _anchor_version_1(potential: Potential, shift: torch.Tensor | None) -> None:
    """Version-1 files gave an isolated atom E0 + shift + the network's constant for its species;
    folding those into E0 makes this gdlphys give every structure the energy the file was trained to."""
    model = potential.model
    with torch.no_grad():
        isolated = model.network_isolated_energies(model.reference_energies.dtype, model.reference_energies.device)
        if shift is not None:
            isolated = isolated + shift.to(isolated)
        model.reference_energies.copy_(isolated)


def save_potential(potential: Potential, path: str | Path, metadata: dict | None = None) -> Path:
    """Write atomically: a kill mid-write leaves the old file or the new one.

    Weights holding a NaN or an infinity (a diverged fit) are a FloatingPointError: such a file
    would predict NaN for every structure, so it is never written."""
    path = Path(path)
    blob = potential_to_dict(potential, metadata if metadata is not None else potential.metadata)
    for name, value in blob["state_dict"].items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"{path} not written: the potential's weights {name} are not finite (a diverged fit?)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(blob, tmp)
    return path


def resolve_potential_path(name_or_path: str | Path) -> Path:
    """A file, a RUN_DIR of ``gdlphys train`` (or a folder with potential.pt), or a shipped name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / POTENTIAL_FILENAME).is_file():
            return path / POTENTIAL_FILENAME
        raise FileNotFoundError(f"{path} is a folder without {POTENTIAL_FILENAME} (is the training run finished?)")
    shipped = find_shipped("potentials", str(name_or_path))
    if shipped is not None and (shipped / POTENTIAL_FILENAME).is_file():
        return shipped / POTENTIAL_FILENAME
    names = ", ".join(shipped_names("potentials")) or "none"
    raise FileNotFoundError(f"no potential file, run folder or shipped potential named {str(name_or_path)!r} (shipped: {names})")


def load_potential(name_or_path: str | Path | Potential, map_location: str | torch.device = "cpu") -> Potential:
    """``gdlphys.load``: a shipped name, a potential file, or a training RUN_DIR -> Potential (eval mode)."""
    if isinstance(name_or_path, Potential):
        return name_or_path
    path = resolve_potential_path(name_or_path)
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSAFE_GLOBAL.search(str(err))
        if found is None:  # not a refused global: bytes that are no pickle at all
            raise PotentialFileError(f"{path} is not a readable potential file (truncated or corrupt?)") from err
        what = f"the Python object {found.group(1)}"
        raise PotentialFileError(
            f"{path} refused: it holds {what}, and loading it would run arbitrary code; gdlphys loads only "
            f"weights and plain values (re-save it with gdlphys.save_potential from a trusted source)"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PotentialFileError(f"{path} is not a readable potential file (truncated or corrupt?): {reason}") from err
    potential = potential_from_dict(blob, str(path))
    potential.source = str(path)
    return potential.eval()

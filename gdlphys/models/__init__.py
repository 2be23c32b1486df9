"""Whole potentials composed from gdlphys.nn blocks, and their files."""

from gdlphys.models.config import ModelConfig
from gdlphys.models.files import PotentialFileError, load_potential, resolve_potential_path, save_potential
from gdlphys.models.potential import Potential, UnknownElementError

__all__ = [
    "ModelConfig",
    "Potential",
    "PotentialFileError",
    "UnknownElementError",
    "load_potential",
    "resolve_potential_path",
    "save_potential",
]

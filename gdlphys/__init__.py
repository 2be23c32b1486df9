"""gdlphys: E(3)-equivariant machine-learned interatomic potentials.

Public API::

    gdlphys.load(name_or_path) -> Potential
    gdlphys.GDLCalculator(potential_or_name, device=None, dtype=None)   # an ASE Calculator
    gdlphys.load_calculator(preset_name_or_path)                        # a preset of ase_calculators/
    gdlphys.data.write_hdf5(path, frames); gdlphys.data.read_hdf5(path) -> list[Atoms]
"""

from __future__ import annotations

from gdlphys.version import __version__

__all__ = ["GDLCalculator", "ModelConfig", "Potential", "__version__", "load", "load_calculator"]


def __getattr__(name: str):
    # Lazy: `import gdlphys.data` or `gdlphys --help` need not import torch and e3nn.
    if name == "load":
        from gdlphys.models.files import load_potential

        return load_potential
    if name == "GDLCalculator":
        from gdlphys.calculator import GDLCalculator

        return GDLCalculator
    if name == "load_calculator":
        from gdlphys.presets import load_calculator

        return load_calculator
    if name == "Potential":
        from gdlphys.models.potential import Potential

        return Potential
    if name == "ModelConfig":
        from gdlphys.models.config import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'gdlphys' has no attribute {name!r}")

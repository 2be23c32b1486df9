"""Layout contracts: only gdlphys is importable; shipped instances resolve by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_instance_folders_are_not_packages():
    for name in ("potentials", "datasets", "ase_calculators"):
        assert not (ROOT / name / "__init__.py").exists()


def test_import_datasets_never_resolves_into_this_repo():
    spec = importlib.util.find_spec("datasets")
    if spec is not None and spec.origin:
        assert ROOT not in Path(spec.origin).resolve().parents


def test_public_api():
    import gdlphys
    import gdlphys.data

    for name in ("load", "GDLCalculator", "__version__"):
        assert hasattr(gdlphys, name)
    for name in ("write_hdf5", "read_hdf5"):
        assert hasattr(gdlphys.data, name)


def test_shipped_potential_loads_by_name_and_path():
    import gdlphys

    potential = gdlphys.load("ethanol-xtb")
    assert potential.species == (1, 6, 8)
    assert gdlphys.load(ROOT / "potentials" / "ethanol-xtb" / "potential.pt").cutoff == potential.cutoff
    with pytest.raises(FileNotFoundError, match="ethanol-xtb"):
        gdlphys.load("no-such-potential")

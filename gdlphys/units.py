"""Conversions for the units gdlphys reports beside ASE's own (eV, Å, e, fs)."""

from __future__ import annotations

from ase import units

DEBYE_PER_E_ANGSTROM = 1.0 / units.Debye  # 1 e*Å = 4.803 D

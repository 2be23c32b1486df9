"""Conversions for the units gdlphys reports beside ASE's own (eV, Å, e, fs)."""

from __future__ import annotations

from ase import units

DEBYE_PER_E_ANGSTROM = 1.0 / units.Debye  # 1 e*Å = 4.803 D

# CODATA 2018 defines both exactly: 1 eV = 1.602176634e-19 J, N_A = 6.02214076e23 /mol.
EV_TO_KJ_PER_MOL = 1.602176634e-22 * 6.02214076e23  # 96.485332123... kJ/mol per eV

"""DFT labels through PySCF, with the recipe of ``datasets/small-dft`` (restricted Kohn-Sham
PBE/def2-SVP, density fitting, SCF tolerance 1e-9 Hartree, neutral closed-shell molecules).

    frame = labelled_copy(atoms, PySCFCalculator())   # energy (eV), forces (eV/Å), dipole (e*Å)

PySCF is an optional dependency (``pip install gdlphys[dft]``); it is imported on first use.
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["DFT_BASIS", "DFT_FUNCTIONAL", "PySCFCalculator", "dft_method", "pyscf_version"]

DFT_FUNCTIONAL, DFT_BASIS = "PBE", "def2-SVP"  # as datasets/small-dft/card.md


def dft_method(functional: str = DFT_FUNCTIONAL, basis: str = DFT_BASIS) -> str:
    """The level of theory as the HDF5 ``method`` attribute records it (``PBE/def2-SVP``)."""
    return f"{functional}/{basis}"


def pyscf_version() -> str:
    """PySCF's version; a clear error where it is not installed."""
    try:
        import pyscf
    except ImportError as err:
        raise ModuleNotFoundError("DFT labels need PySCF (pip install 'gdlphys[dft]')") from err
    return str(pyscf.__version__)


class PySCFCalculator(Calculator):
    """Restricted Kohn-Sham energy, forces (-gradient) and dipole of a neutral closed-shell molecule.

    A fresh SCF each call (no guess from a previous geometry), so a label depends on the geometry alone.
    """

    implemented_properties = ["energy", "forces", "dipole"]
    default_parameters = {"functional": DFT_FUNCTIONAL, "basis": DFT_BASIS, "conv_tol": 1e-9}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        pyscf_version()
        from pyscf import dft, gto

        atoms = self.atoms
        if atoms.pbc.any():
            raise ValueError("PySCFCalculator labels molecules; periodic structures are not supported")
        mol = gto.M(
            atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
            basis=self.parameters["basis"], unit="Angstrom", charge=0, spin=0, verbose=0,
        )
        mf = dft.RKS(mol).density_fit()
        mf.xc = self.parameters["functional"]
        mf.conv_tol = self.parameters["conv_tol"]
        energy = mf.kernel()
        if not mf.converged:
            raise ValueError(f"the PySCF SCF did not converge for {atoms.get_chemical_formula()}")
        gradient = mf.nuc_grad_method().kernel()  # Hartree/Bohr
        dipole = mf.dip_moment(unit="AU", verbose=0)  # e*Bohr
        self.results = {
            "energy": float(energy) * units.Hartree,
            "forces": -np.asarray(gradient) * units.Hartree / units.Bohr,
            "dipole": np.asarray(dipole) * units.Bohr,
        }

"""Registers GDLCalculator with ASE's plugin system (entry-point group ``ase.plugins``).

ASE 3.29 reads the group in its experimental ``ase._4.plugins``; on an ASE without
that system this module exports no plugins and nothing else changes.
"""

from __future__ import annotations

try:
    from ase._4.plugins.plugin import CalculatorPlugin
except ImportError:  # ASE without the plugin system
    __ase_plugins__: set = set()
else:
    __ase_plugins__ = {
        CalculatorPlugin(
            name="gdlphys",
            citation="gdlphys: E(3)-equivariant machine-learned interatomic potentials",
            implementation="gdlphys.calculator.GDLCalculator",
        )
    }

"""gdlphys potentials in OpenMM: the ``openmm-ml`` plugin, ML/MM of a molecule in water, and OpenMM MD.

After ``pip install gdlphys[openmm]`` the potential is found by name through openmm-ml's
``openmmml.potentials`` entry point, with no import of gdlphys by hand::

    from openmmml import MLPotential
    potential = MLPotential("gdlphys", potential="organic-xtb")      # shipped name, file or RUN_DIR
    system = potential.createSystem(topology)                       # the whole system in the potential
    mixed = potential.createMixedSystem(topology, mm_system, ml_atoms)   # ML/MM (mechanical embedding)

The force is OpenMM's ``PythonForce`` (openmm-torch has no CPU wheel for our torch): at each step
it hands the positions (and box) to a :class:`gdlphys.GDLCalculator` and returns its energy and
forces in OpenMM's units (kJ/mol, kJ/mol/nm; CODATA 2018's exact eV). The calculator's neighbour
list, periodic graph, thread policy, committees and uncertainty limit are those of ASE MD, so both
engines compute the same numbers.

Options, given to ``MLPotential(...)`` or to ``createSystem`` / ``createMixedSystem`` (the latter win):

- ``potential``: a shipped name, a ``.pt`` file, a RUN_DIR, or a list of them (a committee);
- ``preset``: an ``ase_calculators/`` preset (name or YAML file) instead of ``potential``;
- ``precision``: ``"single"`` or ``"double"`` (default: the potential's own dtype), or ``dtype``;
- ``device``: ``"cpu"``, ``"cuda"``, ... (default: CUDA when present);
- ``threads``, ``max_force_std``, ``on_exceed``: as for :class:`~gdlphys.GDLCalculator`.

:func:`solvated_system` builds a molecule from SMILES in a water box, ML/MM, ready to run;
:func:`run_openmm_md` is ``gdlphys md --engine openmm``.

OpenMM and openmm-ml are imported here only: gdlphys without them installed imports and works.
"""

from __future__ import annotations

try:  # openmmml first: it loads its plugins (gdlphys.openmm.plugin among them) as it is imported
    import openmm  # noqa: F401
    import openmmml  # noqa: F401
except ImportError as _err:
    raise ImportError(
        "gdlphys.openmm needs OpenMM and openmm-ml: pip install 'gdlphys[openmm]' (or: pip install openmm openmmml)"
    ) from _err

from gdlphys.openmm.plugin import GDLPhysForce, GDLPhysPotentialImpl, GDLPhysPotentialImplFactory, make_calculator
from gdlphys.openmm.systems import (
    ELEMENT_LJ,
    SolvatedSystem,
    degrees_of_freedom,
    run_openmm_md,
    solvated_system,
    topology_from_atoms,
)

__all__ = [
    "ELEMENT_LJ", "GDLPhysForce", "GDLPhysPotentialImpl", "GDLPhysPotentialImplFactory", "SolvatedSystem",
    "degrees_of_freedom", "make_calculator", "run_openmm_md", "solvated_system", "topology_from_atoms",
]

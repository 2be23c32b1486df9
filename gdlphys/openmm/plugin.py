"""The openmm-ml plugin: ``MLPotential("gdlphys", ...)`` as an OpenMM ``PythonForce`` (see :mod:`gdlphys.openmm`).

openmm-ml imports this module through its ``openmmml.potentials`` entry point while it is itself
being imported; the package's ``__init__`` imports openmmml first, so either order of import works.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import openmm
from openmm import unit
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from gdlphys.units import EV_TO_KJ_PER_MOL

KJ_PER_MOL_NM_PER_EV_ANGSTROM = EV_TO_KJ_PER_MOL * 10.0  # 1 eV/Å in kJ/mol/nm (1 nm = 10 Å)
PRECISIONS = {"single": "float32", "double": "float64", "mixed": "float32"}
CALCULATOR_OPTIONS = ("potential", "preset", "precision", "dtype", "device", "threads", "max_force_std", "on_exceed")



def calculator_options(args: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``args`` that configures the calculator; unknown keys are left to openmm-ml."""
    return {k: v for k, v in args.items() if k in CALCULATOR_OPTIONS and v is not None}


def make_calculator(options: dict[str, Any]):
    """A :class:`~gdlphys.GDLCalculator` from the plugin's options (see the module docstring)."""
    from gdlphys.calculator import GDLCalculator
    from gdlphys.presets import load_calculator

    options = dict(options)
    precision = options.pop("precision", None)
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if options.get("dtype") not in (None, PRECISIONS[precision]):
            raise ValueError(f"precision={precision!r} and dtype={options['dtype']!r} disagree; give one of them")
        options["dtype"] = PRECISIONS[precision]
    preset, potential = options.pop("preset", None), options.pop("potential", None)
    if (preset is None) == (potential is None):
        raise ValueError(
            "give the gdlphys plugin one of potential= (a shipped name, .pt file, RUN_DIR or a list: a committee) "
            "or preset= (an ase_calculators/ preset)"
        )
    if preset is not None:
        calc = load_calculator(preset)
        unused = sorted(set(options) - {"threads"})
        if unused:
            raise ValueError(f"with preset= the preset sets {', '.join(unused)}; edit the preset instead")
        calc.threads = options.get("threads")
        return calc
    if isinstance(potential, tuple):
        potential = list(potential)
    return GDLCalculator(potential, **options)


def check_elements(calc, numbers: Sequence[int], where: str = "the topology") -> None:
    """Raise, naming the element and an atom of it, when a potential of ``calc`` lacks it."""
    from ase.data import chemical_symbols

    for potential in calc.potentials:
        missing = sorted(set(int(z) for z in numbers) - set(potential.species))
        if missing:
            first = {z: list(numbers).index(z) for z in missing}
            names = ", ".join(f"{chemical_symbols[z]} (first at atom {first[z]})" for z in missing)
            known = ", ".join(chemical_symbols[z] for z in potential.species)
            raise ValueError(f"{where} holds element(s) {names} that the potential does not know (it knows {known})")


class GDLPhysForce:
    """The PythonForce computation: positions (and box) of an OpenMM State in, energy and forces out.

    Picklable (OpenMM pickles the functions of a PythonForce when a System is copied or
    serialised): the calculator is rebuilt from its options after unpickling.
    """

    def __init__(self, numbers: Sequence[int], periodic: bool, options: dict[str, Any], calculator=None) -> None:
        from ase import Atoms

        self.numbers = np.asarray(numbers, dtype=np.int64)
        self.periodic = bool(periodic)
        self.options = dict(options)
        self.calculator = calculator if calculator is not None else make_calculator(self.options)
        self.atoms = Atoms(numbers=self.numbers, pbc=self.periodic)
        self.atoms.calc = self.calculator

    def __getstate__(self) -> dict:
        return {"numbers": self.numbers, "periodic": self.periodic, "options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["numbers"], state["periodic"], state["options"])

    def __call__(self, state):
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        self.atoms.set_positions(np.asarray(positions, dtype=np.float64))
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom)
            self.atoms.set_cell(np.asarray(box, dtype=np.float64))
        energy = self.atoms.get_potential_energy(apply_constraint=False)
        forces = self.atoms.get_forces(apply_constraint=False)
        return energy * EV_TO_KJ_PER_MOL, forces * KJ_PER_MOL_NM_PER_EV_ANGSTROM


class GDLPhysPotentialImpl(MLPotentialImpl):
    """``MLPotential("gdlphys", potential=...)``: a gdlphys potential as an OpenMM ``PythonForce``."""

    def __init__(self, name: str, **args) -> None:
        self.name = name
        self.options = calculator_options(args)
        unknown = sorted(set(args) - set(CALCULATOR_OPTIONS))
        if unknown:
            raise TypeError(f"MLPotential('gdlphys') got unknown option(s) {', '.join(unknown)}; it takes {', '.join(CALCULATOR_OPTIONS)}")

    def getMLLongRange(self) -> bool:
        return False  # message passing within a cutoff: no Ewald-like long-range term

    def addForces(self, topology, system, atoms: Iterable[int] | None, forceGroup: int, **args) -> None:
        options = {**self.options, **calculator_options(args)}
        included = list(topology.atoms())
        if atoms is not None:
            included = [included[i] for i in atoms]
        nameless = [a.index for a in included if a.element is None]
        if nameless:
            raise ValueError(
                f"every atom the gdlphys potential describes needs an element in the OpenMM topology; atom(s) "
                f"{nameless[:10]} have none (virtual sites and extra particles cannot be ML atoms)"
            )
        numbers = [a.element.atomic_number for a in included]
        periodic = topology.getPeriodicBoxVectors() is not None or system.usesPeriodicBoundaryConditions()
        compute = GDLPhysForce(numbers, periodic, options)
        check_elements(compute.calculator, numbers)
        force = openmm.PythonForce(compute)
        force.setName("gdlphys")
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(list(atoms))
        system.addForce(force)


class GDLPhysPotentialImplFactory(MLPotentialImplFactory):
    """What the ``openmmml.potentials`` entry point ``gdlphys`` names."""

    def createImpl(self, name: str, **args) -> GDLPhysPotentialImpl:
        return GDLPhysPotentialImpl(name, **args)

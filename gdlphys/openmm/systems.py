"""OpenMM systems from ASE structures and SMILES: a molecule in water (ML/MM), and MD reported as ASE's."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from io import StringIO
from typing import Any, Iterable, Sequence

import numpy as np
import openmm
import openmm.app
from openmm import unit
from openmmml.mlpotential import MLPotential  # (not "from openmmml": this may run while openmmml imports)

from gdlphys.openmm.plugin import calculator_options, check_elements, make_calculator
from gdlphys.units import EV_TO_KJ_PER_MOL

# Lennard-Jones parameters by element for the solute's interactions with the water (mechanical
# embedding): sigma (nm), epsilon (kJ/mol), typical GAFF/parm99 values of each element's commonest type.
ELEMENT_LJ = {
    1: (0.2600, 0.0657), 6: (0.3400, 0.3598), 7: (0.3250, 0.7113), 8: (0.2960, 0.8786),
    9: (0.3118, 0.2552), 15: (0.3742, 0.8368), 16: (0.3564, 1.0460), 17: (0.3471, 1.1087),
    35: (0.3924, 1.3221), 53: (0.4187, 1.6736),
}


def _potential(**options) -> MLPotential:
    return MLPotential("gdlphys", **options)


# ---------------------------------------------------------------------------------------------
# Topologies from ASE and RDKit


def topology_from_atoms(atoms, bonds: Iterable[tuple[int, int]] = (), residue: str = "MOL"):
    """An OpenMM Topology (one chain, one residue) and positions (nm) for ``atoms``; periodic when
    the atoms are periodic in all three directions (their cell becomes the box)."""
    top = openmm.app.Topology()
    chain = top.addChain()
    res = top.addResidue(residue, chain)
    counts: dict[str, int] = {}
    made = []
    for z in atoms.numbers:
        element = openmm.app.Element.getByAtomicNumber(int(z))
        counts[element.symbol] = counts.get(element.symbol, 0) + 1
        made.append(top.addAtom(f"{element.symbol}{counts[element.symbol]}", element, res))
    for i, j in bonds:
        top.addBond(made[i], made[j])
    if np.asarray(atoms.pbc).all():
        top.setPeriodicBoxVectors([openmm.Vec3(*row) * 0.1 for row in atoms.cell.array] * unit.nanometer)
    elif np.asarray(atoms.pbc).any():
        raise ValueError("OpenMM boxes are periodic in all three directions; these atoms are periodic in some only")
    return top, (atoms.positions * 0.1) * unit.nanometer


# ---------------------------------------------------------------------------------------------
# A molecule from SMILES in a box of water


@dataclass
class SolvatedSystem:
    """What :func:`solvated_system` builds; ``system`` is ready for an integrator."""

    smiles: str
    topology: Any  # openmm.app.Topology: the solute (residue "MOL") first, then the water
    positions: Any  # Quantity, nm
    system: Any  # openmm.System: ML/MM (solute in the potential, water and solute-water in the force field)
    mm_system: Any  # openmm.System: all-MM (solute charges and element LJ), the reference of the embedding
    ml_atoms: list[int]
    charges: np.ndarray  # the solute's MM charges (e): see solvated_system's ``charges``
    charge_source: str
    box_nm: float
    water: str
    n_waters: int = 0
    options: dict = field(default_factory=dict)

    def simulation(self, integrator, platform: str = "CPU", properties: dict | None = None):
        """An ``openmm.app.Simulation`` of the ML/MM system at the built positions."""
        plat = openmm.Platform.getPlatformByName(platform)
        sim = openmm.app.Simulation(self.topology, self.system, integrator, plat, properties or {})
        sim.context.setPositions(self.positions)
        return sim


WATER_MODELS = {"tip3p": "amber14/tip3p.xml", "spce": "amber14/spce.xml", "tip4pew": "amber14/tip4pew.xml"}


def _solute_ffxml(atoms, bonds, charges) -> str:
    """A one-residue force field for the solute: a type per atom with its charge and element LJ
    (no bonded terms: the potential describes the solute's inside)."""
    from ase.data import atomic_masses, chemical_symbols

    types, residue, nonbonded = [], [], []
    names = []
    counts: dict[str, int] = {}
    for i, z in enumerate(atoms.numbers):
        z = int(z)
        if z not in ELEMENT_LJ:
            raise ValueError(f"no Lennard-Jones parameters for {chemical_symbols[z]} (atom {i}) in the solute's MM model")
        symbol = chemical_symbols[z]
        counts[symbol] = counts.get(symbol, 0) + 1
        names.append(f"{symbol}{counts[symbol]}")
        sigma, epsilon = ELEMENT_LJ[z]
        types.append(f'<Type name="gdl-{i}" class="gdl-{i}" element="{symbol}" mass="{atomic_masses[z]:.6f}"/>')
        residue.append(f'<Atom name="{names[-1]}" type="gdl-{i}"/>')
        nonbonded.append(f'<Atom type="gdl-{i}" charge="{charges[i]:.8f}" sigma="{sigma}" epsilon="{epsilon}"/>')
    residue += [f'<Bond atomName1="{names[i]}" atomName2="{names[j]}"/>' for i, j in bonds]
    return (
        "<ForceField><AtomTypes>" + "".join(types) + "</AtomTypes>"
        '<Residues><Residue name="MOL">' + "".join(residue) + "</Residue></Residues>"
        '<NonbondedForce coulomb14scale="0.833333" lj14scale="0.5">' + "".join(nonbonded) + "</NonbondedForce>"
        "</ForceField>"
    )


def _gasteiger_charges(mol) -> np.ndarray:
    from rdkit.Chem import AllChem

    AllChem.ComputeGasteigerCharges(mol)
    charges = np.array([float(a.GetProp("_GasteigerCharge")) for a in mol.GetAtoms()])
    if not np.all(np.isfinite(charges)):
        raise ValueError("RDKit has no Gasteiger parameters for an element of this molecule; use charges='xtb'")
    return charges


def solvated_system(
    smiles: str,
    potential: str | Sequence[str] = "organic-xtb",
    box_nm: float | None = None,
    padding_nm: float = 1.0,
    water: str = "tip3p",
    charges: str = "xtb",
    cutoff_nm: float = 0.9,
    seed: int = 0,
    relax: bool = True,
    **options,
) -> SolvatedSystem:
    """A molecule from SMILES in a cubic box of water, as an ML/MM OpenMM system, ready to run.

    The solute (RDKit conformer, relaxed in the potential when ``relax``) is described by the gdlphys
    potential; the water by ``water`` (``tip3p``, ``spce`` or ``tip4pew``, rigid, PME with
    ``cutoff_nm``); solute-water interactions by the force field (mechanical embedding) with fixed
    solute charges and element Lennard-Jones parameters (:data:`ELEMENT_LJ`). ``charges``:
    ``"xtb"`` (GFN2-xTB's at the relaxed geometry, the level the shipped potentials learn),
    ``"gasteiger"`` (RDKit's), or ``"potential"`` (the potential's charge head: only as good as the
    dipoles it was fitted to; organic-xtb 1's are far smaller than xTB's). The box edge is
    ``box_nm``, or the solute's extent plus ``2 * padding_nm`` (at least ``2 * cutoff_nm`` + 0.1 nm).
    ``options`` go to the calculator (``precision``, ``device``, ``threads``, ...).
    """
    from ase.optimize import BFGS

    from gdlphys.molecules import parse_smiles, smiles_to_atoms

    if water not in WATER_MODELS:
        raise ValueError(f"water must be one of {', '.join(WATER_MODELS)}, got {water!r}")
    if charges not in ("xtb", "potential", "gasteiger"):
        raise ValueError(f"charges must be 'xtb', 'potential' or 'gasteiger', got {charges!r}")
    mol = parse_smiles(smiles)
    atoms = smiles_to_atoms(smiles, seed=seed)[0]
    options = calculator_options({"potential": potential, **options})
    calc = make_calculator(options)
    check_elements(calc, atoms.numbers, where=f"SMILES {smiles!r}")
    atoms.calc = calc
    if relax:
        BFGS(atoms, logfile=None).run(fmax=0.02, steps=500)
    atoms.positions -= atoms.positions.mean(axis=0)
    if charges == "potential":
        if "charges" not in calc.implemented_properties:
            raise ValueError("charges='potential' needs a potential with a dipole/charge head; use charges='xtb'")
        q = np.asarray(atoms.get_charges(), dtype=np.float64)
    elif charges == "xtb":
        from gdlphys.data.label import tblite_calculator

        q = np.asarray(tblite_calculator().get_property("charges", atoms.copy()), dtype=np.float64)
    else:
        q = _gasteiger_charges(mol)
    q = q - q.mean()  # a neutral molecule (SMILES parsing takes only those): exactly zero net charge
    extent = float(np.ptp(atoms.positions, axis=0).max()) / 10.0
    edge = float(box_nm) if box_nm is not None else extent + 2.0 * padding_nm
    if edge < 2.0 * cutoff_nm + 0.1 - 1e-9:
        if box_nm is not None:
            raise ValueError(f"box_nm={box_nm} is too small for the {cutoff_nm} nm cutoff: give at least {2 * cutoff_nm + 0.1:.2f}")
        edge = 2.0 * cutoff_nm + 0.1
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    atoms.positions += 5.0 * edge  # the box's centre (Å)
    solute_top, solute_pos = topology_from_atoms(atoms, bonds)
    forcefield = openmm.app.ForceField(WATER_MODELS[water], StringIO(_solute_ffxml(atoms, bonds, q)))
    modeller = openmm.app.Modeller(solute_top, solute_pos)
    modeller.addSolvent(forcefield, model=water, boxSize=openmm.Vec3(edge, edge, edge) * unit.nanometer)
    mm_system = forcefield.createSystem(
        modeller.topology, nonbondedMethod=openmm.app.PME, nonbondedCutoff=cutoff_nm * unit.nanometer, rigidWater=True
    )
    ml_atoms = list(range(len(atoms)))
    system = _potential(**options).createMixedSystem(modeller.topology, mm_system, ml_atoms)
    n_waters = sum(1 for r in modeller.topology.residues() if r.name == "HOH")
    return SolvatedSystem(
        smiles=smiles, topology=modeller.topology, positions=modeller.positions, system=system, mm_system=mm_system,
        ml_atoms=ml_atoms, charges=q, charge_source=charges, box_nm=edge, water=water, n_waters=n_waters, options=options,
    )


# ---------------------------------------------------------------------------------------------
# MD through OpenMM, reported as gdlphys.md reports ASE's


def degrees_of_freedom(system) -> int:
    """3 per massive particle, less constraints and the centre of mass when a CMMotionRemover is on."""
    n = sum(1 for i in range(system.getNumParticles()) if system.getParticleMass(i).value_in_unit(unit.dalton) > 0)
    removes_com = any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    return 3 * n - system.getNumConstraints() - (3 if removes_com else 0)


def run_openmm_md(
    atoms,
    potential: str | Sequence[str] | None = None,
    steps: int = 2000,
    timestep_fs: float = 0.5,
    temperature_k: float = 300.0,
    ensemble: str = "nve",
    friction_per_fs: float = 0.01,
    seed: int = 0,
    platform: str = "CPU",
    progress: bool = True,
    **options,
):
    """:func:`gdlphys.md.run_md`'s protocol in OpenMM: the same start (velocities from the same seed),
    VerletIntegrator (``nve``) or LangevinMiddleIntegrator (``langevin``), the same report."""
    import sys

    from ase import units

    from gdlphys.md import MDReport
    from gdlphys.nve import energy_statistics, initialise_velocities

    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if steps < 1 or timestep_fs <= 0:
        raise ValueError("steps must be >= 1 and the time step positive")
    atoms = atoms.copy()
    topology, positions = topology_from_atoms(atoms)
    system = _potential(**calculator_options({"potential": potential, **options})).createSystem(topology)
    for i, mass in enumerate(atoms.get_masses()):  # ASE's masses: the very dynamics of the ASE run
        system.setParticleMass(i, float(mass) * unit.dalton)
    dt = timestep_fs * unit.femtoseconds
    if ensemble == "nve":
        integrator = openmm.VerletIntegrator(dt)
    else:
        integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, friction_per_fs / unit.femtoseconds, dt)
        integrator.setRandomNumberSeed(seed + 1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    rng = np.random.default_rng(seed)
    if temperature_k > 0 and len(atoms) > 1:
        initialise_velocities(atoms, temperature_k, rng)
    context.setVelocities(atoms.get_velocities() * units.fs * 100.0 * unit.nanometer / unit.picosecond)  # Å/fs -> nm/ps
    dof = degrees_of_freedom(system)
    kb = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    energies, temperatures = [], []

    def record() -> None:
        state = context.getState(getEnergy=True)
        epot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not np.isfinite(epot):
            raise FloatingPointError(f"MD stopped at step {len(energies)}: non-finite energy (E = {epot} kJ/mol)")
        energies.append((epot + ekin) / EV_TO_KJ_PER_MOL)
        temperatures.append(2.0 * ekin / (dof * kb) if dof > 0 else 0.0)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="MD (OpenMM)", unit="step", file=sys.stderr, mininterval=1.0)
    try:
        record()
        start = time.perf_counter()
        for _ in range(steps):
            integrator.step(1)
            record()
            if bar is not None:
                bar.update(1)
        elapsed = time.perf_counter() - start
    finally:
        if bar is not None:
            bar.close()
    e = np.asarray(energies)
    stats = energy_statistics(e, timestep_fs, len(atoms))
    return MDReport(
        steps=steps, time_fs=steps * timestep_fs, n_atoms=len(atoms), ensemble=ensemble,
        steps_per_second=steps / elapsed, initial_energy_ev=float(e[0]), final_energy_ev=float(e[-1]),
        drift_mev_per_atom=stats["drift_mev_per_atom"], max_deviation_mev_per_atom=stats["max_deviation_mev_per_atom"],
        energy_std_mev_per_atom=stats["energy_std_mev_per_atom"], mean_temperature_k=float(np.mean(temperatures)),
    )

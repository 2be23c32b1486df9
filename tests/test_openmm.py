"""gdlphys in OpenMM: the openmm-ml plugin gives the ASE calculator's numbers, conserves energy,
and runs a molecule from SMILES in water (ML/MM), the potential's and the force field's parts each
where they belong."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmml")

from openmm import unit  # noqa: E402
from openmmml import MLPotential  # noqa: E402

from gdlphys import GDLCalculator  # noqa: E402
from gdlphys.cli import main  # noqa: E402
from gdlphys.md import run_md  # noqa: E402
from gdlphys.openmm import run_openmm_md, solvated_system, topology_from_atoms  # noqa: E402
from gdlphys.units import EV_TO_KJ_PER_MOL  # noqa: E402

POTENTIAL = "ethanol-xtb"  # shipped, knows H, C, O; small and fast
KJ_NM = unit.kilojoule_per_mole / unit.nanometer


def _ethanol() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    return atoms


def _water_box() -> Atoms:
    """Eight rattled water molecules in a 6.2 Å periodic cube (edges shorter than twice the cutoff)."""
    water = molecule("H2O")
    atoms = Atoms(cell=np.eye(3) * 6.2, pbc=True)
    for k, corner in enumerate(np.ndindex(2, 2, 2)):
        w = water.copy()
        w.rotate(37.0 * k, "xyz"[k % 3], center="COM")
        w.translate(np.array(corner) * 3.1 + 0.8)
        atoms += w
    atoms.rattle(0.05, seed=1)
    return atoms


def _openmm_energy_forces(system, positions, box=None, groups=None):
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    kwargs = {} if groups is None else {"groups": groups}
    state = context.getState(getEnergy=True, getForces=True, **kwargs)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL
    forces = state.getForces(asNumpy=True).value_in_unit(KJ_NM) / (10.0 * EV_TO_KJ_PER_MOL)
    return energy, np.asarray(forces)


@pytest.mark.parametrize("structure", [_ethanol, _water_box], ids=["molecule", "periodic-box"])
def test_openmm_gives_the_calculators_energy_and_forces(structure):
    atoms = structure()
    topology, positions = topology_from_atoms(atoms)
    system = MLPotential("gdlphys", potential=POTENTIAL, precision="double").createSystem(topology)
    energy, forces = _openmm_energy_forces(system, positions)
    atoms.calc = GDLCalculator(POTENTIAL, dtype="float64")
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(forces, atoms.get_forces(), rtol=1e-10, atol=1e-10)
    if atoms.pbc.all():  # the periodic graph: a molecule moved by a box vector changes nothing
        moved = atoms.positions.copy()
        moved[:3] += atoms.cell[0]
        energy_moved, forces_moved = _openmm_energy_forces(system, moved * 0.1 * unit.nanometer)
        assert energy_moved == pytest.approx(energy, rel=1e-12)
        np.testing.assert_allclose(forces_moved, forces, atol=1e-9)


def test_plugin_is_found_from_a_script_that_imports_only_openmm(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import openmm, openmm.app as app
        from openmm import unit
        from openmmml import MLPotential

        top = app.Topology()
        res = top.addResidue("HOH", top.addChain())
        for symbol in "OHH":
            top.addAtom(symbol, app.Element.getBySymbol(symbol), res)
        system = MLPotential("gdlphys", potential="{POTENTIAL}", precision="double").createSystem(top)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions([openmm.Vec3(0, 0, 0), openmm.Vec3(0.0957, 0, 0), openmm.Vec3(-0.024, 0.0927, 0)] * unit.nanometer)
        e = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        print(json.dumps({{"energy": e}}))
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    energy = json.loads(done.stdout.strip().splitlines()[-1])["energy"] / EV_TO_KJ_PER_MOL
    water = Atoms("OH2", positions=[[0, 0, 0], [0.957, 0, 0], [-0.24, 0.927, 0]])
    water.calc = GDLCalculator(POTENTIAL, dtype="float64")
    assert energy == pytest.approx(water.get_potential_energy(), rel=1e-12)


def test_an_element_the_potential_lacks_is_named():
    topology, _ = topology_from_atoms(molecule("CH3CN"))
    with pytest.raises(ValueError, match=r"element\(s\) N \(first at atom \d+\).*knows"):
        MLPotential("gdlphys", potential=POTENTIAL).createSystem(topology)


def test_bad_options_are_named():
    with pytest.raises(TypeError, match="unknown option.*temperature"):
        MLPotential("gdlphys", potential=POTENTIAL, temperature=300)
    topology, _ = topology_from_atoms(_ethanol())
    with pytest.raises(ValueError, match="precision must be one of"):
        MLPotential("gdlphys", potential=POTENTIAL, precision="quad").createSystem(topology)
    with pytest.raises(ValueError, match="give the gdlphys plugin one of potential="):
        MLPotential("gdlphys").createSystem(topology)


def test_systems_copy_and_serialise():
    """OpenMM pickles a PythonForce's function when a System is copied: the copy computes the same."""
    atoms = _ethanol()
    topology, positions = topology_from_atoms(atoms)
    system = MLPotential("gdlphys", potential=POTENTIAL, precision="double").createSystem(topology)
    twin = copy.deepcopy(system)
    assert _openmm_energy_forces(twin, positions)[0] == pytest.approx(_openmm_energy_forces(system, positions)[0], rel=1e-13)


def test_nve_in_openmm_conserves_energy_like_ase():
    atoms = _ethanol()
    atoms.calc = GDLCalculator(POTENTIAL, dtype="float64")
    common = dict(steps=400, timestep_fs=0.5, temperature_k=300.0, seed=4, progress=False)
    ase_atoms = atoms.copy()  # (a copy drops the calculator)
    ase_atoms.calc = atoms.calc
    ase_run = run_md(ase_atoms, **common)
    omm_run = run_openmm_md(atoms, potential=POTENTIAL, dtype="float64", **common)
    assert omm_run.steps == 400 and np.isfinite(omm_run.final_energy_ev)
    # the same start, the same potential: the total energy wanders as much in both engines
    assert omm_run.energy_std_mev_per_atom < 2.0 * ase_run.energy_std_mev_per_atom + 0.01
    assert abs(omm_run.drift_mev_per_atom) < 2.0 * abs(ase_run.drift_mev_per_atom) + 0.05
    assert omm_run.initial_energy_ev == pytest.approx(ase_run.initial_energy_ev, abs=0.01 * len(atoms))


def test_cli_md_engine_openmm(capsys, tmp_path):
    assert main(["md", POTENTIAL, "CCO", "--engine", "openmm", "--steps", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 20 and report["n_atoms"] == 9 and report["ensemble"] == "nve"


@pytest.mark.slow
def test_a_smiles_in_water_runs_mlmm_with_each_part_where_it_belongs():
    solvated = solvated_system("CCO", potential=POTENTIAL, box_nm=1.9, precision="double")
    assert solvated.ml_atoms == list(range(9)) and solvated.n_waters > 150
    assert abs(solvated.charges.sum()) < 1e-9 and solvated.charges[2] < -0.3  # xTB's charge on the O
    system = solvated.system
    (ml_force,) = [f for f in system.getForces() if f.getName() == "gdlphys"]
    ml_force.setForceGroup(1)
    positions = solvated.positions
    box = solvated.topology.getPeriodicBoxVectors()
    _, ml_forces = _openmm_energy_forces(system, positions, box, groups={1})
    _, mm_forces = _openmm_energy_forces(system, positions, box, groups={0})
    _, all_mm = _openmm_energy_forces(solvated.mm_system, positions, box)
    solute = Atoms(
        numbers=[a.element.atomic_number for a in list(solvated.topology.atoms())[:9]],
        positions=np.asarray(positions.value_in_unit(unit.angstrom))[:9],
        cell=np.asarray(box.value_in_unit(unit.angstrom)), pbc=True,
    )
    solute.calc = GDLCalculator(POTENTIAL, dtype="float64")
    np.testing.assert_allclose(ml_forces[:9], solute.get_forces(), atol=1e-9)  # the solute: the potential
    assert np.abs(ml_forces[9:]).max() == 0.0  # the water: untouched by it
    # the water feels the force field exactly as in the all-MM system (water-water and solute-water)
    np.testing.assert_allclose(mm_forces[9:], all_mm[9:], rtol=1e-6, atol=1e-4)

    ml_force.setForceGroup(0)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 5 / unit.picosecond, 1 * unit.femtoseconds)
    integrator.setRandomNumberSeed(7)
    sim = solvated.simulation(integrator)
    sim.minimizeEnergy(maxIterations=200)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 7)
    sim.step(1000)  # 1 ps
    state = sim.context.getState(getEnergy=True, getPositions=True)
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    from gdlphys.openmm import degrees_of_freedom

    kb = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    temperature = 2 * state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / (degrees_of_freedom(system) * kb)
    assert 240 < temperature < 360
    xyz = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom))[:9]
    co = np.linalg.norm(xyz[0] - xyz[1])  # the solute stays a molecule: its C-C bond holds
    assert 1.35 < co < 1.75


@pytest.mark.slow
def test_interpolated_mlmm_goes_from_the_force_field_to_the_potential():
    """openmm-ml's lambda_interpolate (free-energy corrections MM -> ML/MM) carries our force inside a CustomCVForce."""
    solvated = solvated_system("CO", potential=POTENTIAL, box_nm=1.9, precision="double", relax=False)
    mixed = MLPotential("gdlphys", potential=POTENTIAL, precision="double").createMixedSystem(
        solvated.topology, solvated.mm_system, solvated.ml_atoms, interpolate=True)
    box = solvated.topology.getPeriodicBoxVectors()

    def energy(system, lam=None):
        context = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
        context.setPeriodicBoxVectors(*box)
        context.setPositions(solvated.positions)
        if lam is not None:
            context.setParameter("lambda_interpolate", lam)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    assert energy(mixed, 1.0) == pytest.approx(energy(solvated.system), rel=1e-9, abs=1e-6)
    assert energy(mixed, 0.0) == pytest.approx(energy(solvated.mm_system), rel=1e-9, abs=1e-6)


def test_gdlphys_works_without_openmm(tmp_path):
    """OpenMM is optional: with it hidden, gdlphys imports and computes; only gdlphys.openmm says what is missing."""
    code = textwrap.dedent("""
        import sys, importlib.abc
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("openmm", "openmmml"):
                    raise ModuleNotFoundError(f"No module named {name!r}")
        sys.meta_path.insert(0, Hide())
        from ase.build import molecule
        import gdlphys
        atoms = molecule("CH3CH2OH")
        atoms.calc = gdlphys.GDLCalculator("ethanol-xtb")
        print(atoms.get_potential_energy())
        try:
            import gdlphys.openmm
        except ImportError as err:
            print("ImportError:", err)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    energy, error = done.stdout.strip().splitlines()[-2:]
    assert np.isfinite(float(energy))
    assert "pip install 'gdlphys[openmm]'" in error

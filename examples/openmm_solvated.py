"""A molecule from SMILES in a box of TIP3P water, in OpenMM: the solute in a gdlphys potential, the water in
the force field (ML/MM, mechanical embedding). Langevin dynamics to equilibrate, then an NVE segment that
shows the energy is conserved, and the temperature of both.

    .venv/bin/python examples/openmm_solvated.py                       # ethanol in water, organic-xtb
    .venv/bin/python examples/openmm_solvated.py --smiles "CC(=O)Nc1ccc(O)cc1" --langevin-ps 5

Runs on OpenMM's CPU platform in a few minutes (needs ``pip install 'gdlphys[openmm]'``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import openmm
from openmm import unit

from gdlphys.openmm import degrees_of_freedom, solvated_system
from gdlphys.units import EV_TO_KJ_PER_MOL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smiles", default="CCO")
    parser.add_argument("--potential", default="organic-xtb")
    parser.add_argument("--box", type=float, default=None, help="cubic box edge in nm (default: solute + 2 x 1 nm)")
    parser.add_argument("--langevin-ps", type=float, default=2.0, help="equilibration at --temperature (1 fs steps)")
    parser.add_argument("--nve-ps", type=float, default=0.5, help="NVE segment after it (0.5 fs steps)")
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    solvated = solvated_system(args.smiles, potential=args.potential, box_nm=args.box, precision="double")
    n_atoms = solvated.system.getNumParticles()
    print(f"{args.smiles}: {len(solvated.ml_atoms)} ML atoms ({args.potential}) in {solvated.n_waters} TIP3P waters, "
          f"{solvated.box_nm:.2f} nm box; built in {time.perf_counter() - start:.0f} s")
    kb = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    dof = degrees_of_freedom(solvated.system)

    def temperature(state) -> float:
        return 2.0 * state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / (dof * kb)

    langevin = openmm.LangevinMiddleIntegrator(args.temperature * unit.kelvin, 5 / unit.picosecond, 1 * unit.femtoseconds)  # 0.2 ps to equilibrate
    sim = solvated.simulation(langevin)
    sim.minimizeEnergy(maxIterations=500)
    sim.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, 1)
    steps = int(round(args.langevin_ps * 1000))
    temps, t0 = [], time.perf_counter()
    for _ in range(max(1, steps // 50)):
        sim.step(50)
        temps.append(temperature(sim.context.getState(getEnergy=True)))
    langevin_rate = steps / (time.perf_counter() - t0)
    print(f"Langevin {args.langevin_ps} ps: <T> {np.mean(temps[len(temps) // 2:]):.0f} K (second half), {langevin_rate:.1f} steps/s")

    state = sim.context.getState(getPositions=True, getVelocities=True)
    verlet = openmm.VerletIntegrator(0.5 * unit.femtoseconds)
    nve = openmm.Context(solvated.system, verlet, openmm.Platform.getPlatformByName("CPU"))
    nve.setPeriodicBoxVectors(*state.getPeriodicBoxVectors())
    nve.setPositions(state.getPositions())
    nve.setVelocities(state.getVelocities())
    nve_steps = int(round(args.nve_ps * 2000))
    energies, nve_temps = [], []
    for _ in range(max(1, nve_steps // 10) + 1):
        s = nve.getState(getEnergy=True)
        energies.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
        nve_temps.append(temperature(s))
        verlet.step(10)
    e = np.asarray(energies) / EV_TO_KJ_PER_MOL * 1000.0 / n_atoms  # meV/atom
    t_ps = np.arange(len(e)) * 10 * 0.5e-3
    report = {
        "smiles": args.smiles, "potential": args.potential, "ml_atoms": len(solvated.ml_atoms), "waters": solvated.n_waters,
        "box_nm": solvated.box_nm, "langevin_ps": args.langevin_ps, "langevin_mean_temperature_k": float(np.mean(temps[len(temps) // 2:])),
        "langevin_steps_per_second": langevin_rate, "nve_ps": args.nve_ps,
        "nve_drift_mev_per_atom_per_ps": float(np.polyfit(t_ps, e, 1)[0]),
        "nve_energy_std_mev_per_atom": float(np.std(e)), "nve_mean_temperature_k": float(np.mean(nve_temps)),
    }
    print(f"NVE {args.nve_ps} ps (0.5 fs): drift {report['nve_drift_mev_per_atom_per_ps']:+.4f} meV/atom/ps, "
          f"std {report['nve_energy_std_mev_per_atom']:.4f} meV/atom, <T> {report['nve_mean_temperature_k']:.0f} K")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()

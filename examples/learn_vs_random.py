"""Does selecting by committee spread beat random frames at equal labels?

Runs ``gdlphys learn`` (spread selection) from a SMILES and a starting potential, then the same
loop with ``select="random"`` and the budget the first run used, and measures both final
committees on independent GFN2-xTB frames at the target temperature (Langevin MD with xTB
itself, another seed): force MAE, and the Spearman rho of spread and error of the spread run's
calibration.

    .venv/bin/python examples/learn_vs_random.py --smiles CCN --potential ethanol-xtb --temperature 600 -o runs/al
    .venv/bin/python examples/learn_vs_random.py --tiny -o /tmp/al     # a smoke run of a few minutes

The full run (hundreds of labels, minutes of fine-tuning per member and round) takes hours on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gdlphys.data import read_hdf5
from gdlphys.data.label import label_smiles
from gdlphys.learn import LearnConfig, calibrate, learn
from gdlphys.learn.config import DRIVES

TINY = dict(trajectories=1, steps=40, interval=5, per_round=2, seed_frames=4, committee_size=2, retrain_epochs=1,
            max_force_std=1e-3, rounds=2, budget_labels=8, calibration_frames=4, accelerator="cpu")


def broken_or_new_bonds(start, atoms) -> list[str]:
    """Bonds of ``start`` (within 1.2x the sum of ASE's natural covalent radii) stretched past
    1.6x that sum, and atoms of no bond in ``start`` come closer than 0.9x it: chemistry changed,
    not a hot vibration (C-H at 600 K reaches 1.25 Å, 1.17x the sum of the radii)."""
    import numpy as np
    from ase.neighborlist import natural_cutoffs

    radii = np.array(natural_cutoffs(start))
    limit = radii[:, None] + radii[None, :]
    before = np.linalg.norm(start.positions[:, None] - start.positions[None], axis=-1)
    now = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    bonded = before < 1.2 * limit
    i, j = np.triu_indices(len(start), 1)
    found = [f"{start.symbols[a]}{a}-{start.symbols[b]}{b} broken ({now[a, b]:.2f} Å)" for a, b in zip(i, j)
             if bonded[a, b] and now[a, b] > 1.6 * limit[a, b]]
    found += [f"{start.symbols[a]}{a}-{start.symbols[b]}{b} formed ({now[a, b]:.2f} Å)" for a, b in zip(i, j)
              if not bonded[a, b] and now[a, b] < 0.9 * limit[a, b]]
    return found


def stays_physical(potential, start, temperature: float, ps: float, seed: int = 3) -> dict:
    """Langevin MD of ``ps`` picoseconds with ``potential``: does the molecule keep its bonds (checked every 50 fs)?"""
    from ase import units
    from ase.md.langevin import Langevin

    from gdlphys import GDLCalculator
    from gdlphys.nve import initialise_velocities
    import numpy as np

    atoms = start.copy()
    atoms.calc = GDLCalculator(str(potential), dtype="float64")
    rng = np.random.default_rng(seed)
    initialise_velocities(atoms, temperature, rng)
    dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=temperature, friction=0.01 / units.fs, rng=rng)
    changed, at = [], None
    for block in range(int(round(ps * 2000 / 100))):
        dyn.run(100)
        changed = broken_or_new_bonds(start, atoms) if np.all(np.isfinite(atoms.positions)) else ["non-finite positions"]
        if changed:
            at = (block + 1) * 100 * 0.5 / 1000
            break
    return {"ps": ps, "temperature_K": temperature, "bonds_kept": not changed, "changed_at_ps": at, "changes": changed[:5]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smiles", default="CCN")
    parser.add_argument("--potential", default="ethanol-xtb")
    parser.add_argument("--temperature", type=float, default=600.0)
    parser.add_argument("--budget-labels", type=int, default=200)
    parser.add_argument("--test-frames", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--per-round", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="MD steps per exploration trajectory")
    parser.add_argument("--trajectories", type=int, default=None)
    parser.add_argument("--retrain-time", default="3m", help="fine-tuning budget per member and round")
    parser.add_argument("--seed-frames", type=int, default=None, help="labelled frames of the starting potential's MD the loop starts from")
    parser.add_argument("--max-force-std", type=float, default=None, help="spread (eV/Å) that makes a frame a candidate")
    parser.add_argument("--md-ps", type=float, default=10.0, help="Langevin MD of each final potential at the temperature")
    parser.add_argument("--md-runs", type=int, default=1, help="independent MD runs (seeds) of each final potential")
    parser.add_argument("--drive", choices=list(DRIVES), default=None, help="what exploration MD moves on (LearnConfig.drive)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: a few labels, one epoch per round")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    options = dict(TINY) if args.tiny else dict(budget_labels=args.budget_labels, retrain_time=args.retrain_time, retrain_epochs=None)
    options.update({key: value for key, value in (("per_round", args.per_round), ("rounds", args.rounds), ("steps", args.steps),
                                                  ("trajectories", args.trajectories), ("seed_frames", args.seed_frames),
                                                  ("max_force_std", args.max_force_std), ("drive", args.drive)) if value is not None})
    config = LearnConfig(temperatures=(args.temperature,), workers=args.workers, **options)
    n_test = 4 if args.tiny else args.test_frames
    test = label_smiles([args.smiles], args.output / "test.h5", frames=n_test, temperature=args.temperature, stride=20,
                        seed=12345, equilibration_steps=200, workers=1, progress=False).path
    spread = learn(args.smiles, args.potential, args.output / "spread", config=config, test=test)
    # the baseline: random frames of the same MD, the same number of labels, never stopping early
    random = learn(args.smiles, args.potential, args.output / "random", test=test,
                   config=LearnConfig(**{**config.to_dict(), "select": "random", "budget_labels": spread.labels_used,
                                         "rounds": max(config.rounds, len(spread.rounds)), "calibration_frames": 0}))
    frames = read_hdf5(test)
    report = {"smiles": args.smiles, "potential": args.potential, "temperature_K": args.temperature, "test_frames": len(frames)}
    for name, result in (("spread", spread), ("random", random)):
        measured, _, _ = calibrate(result.committee, frames)
        best, _, _ = calibrate([result.potential_path], frames)
        report[name] = {"labels": result.labels_used, "rounds": len(result.rounds), "finished": result.finished,
                        "committee_forces_mae": measured.forces_mae, "best_forces_mae": best.forces_mae,
                        "test_spearman_rho": measured.spearman_rho}
        runs = [stays_physical(result.potential_path, frames[0], args.temperature, 0.05 if args.tiny else args.md_ps, seed=3 + k)
                for k in range(args.md_runs)]
        report[name]["md"] = runs[0] if len(runs) == 1 else runs
    try:  # the starting potential on the same test: it may not know an element of the molecule at all
        start_mae = calibrate([args.potential], frames)[0].forces_mae
        start_md = stays_physical(args.potential, frames[0], args.temperature, 0.05 if args.tiny else args.md_ps)
        report["starting_potential"] = {"forces_mae": start_mae, "md": start_md}
    except ValueError as err:
        report["starting_potential"] = {"error": str(err)}
    report["calibration"] = spread.calibration
    text = json.dumps(report, indent=2)
    (args.output / "learn_vs_random.json").write_text(text)
    print(text)
    print(f"force MAE at {spread.labels_used} labels: spread {1000 * report['spread']['committee_forces_mae']:.1f}, "
          f"random {1000 * report['random']['committee_forces_mae']:.1f} meV/Å", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``gdlphys learn``: the active-learning loop (:func:`gdlphys.learn.learn`) from the command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

def _defaults():
    from gdlphys.learn.config import LearnConfig

    return {f.name: f.default for f in fields(LearnConfig)}


def register(sub) -> None:
    from gdlphys.learn.config import DRIVES, ROLLBACK_FRAMES, SELECTIONS

    d = _defaults()
    p = sub.add_parser(
        "learn", help="active learning: committee MD -> select uncertain frames -> label -> fine-tune, until converged",
        description=(
            "Explore with committee MD, label the frames the members disagree on (GFN2-xTB or PBE/def2-SVP), "
            "fine-tune every member on all labels so far, and repeat until a full-length exploration finds no "
            "frame over --max-force-std or the label budget is spent. Rerun the same command to resume."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("start", metavar="START", help="a SMILES, a structure file ase.io reads, or an HDF5 file of seed frames")
    p.add_argument("--potential", required=True, help="starting potential (shipped name, file, RUN_DIR: a committee is "
                   "fine-tuned from it with different seeds) or a committee preset (ase_calculators/ name or YAML)")
    p.add_argument("--label", choices=["xtb", "dft"], default=d["label"], help="level of theory: GFN2-xTB (tblite) or "
                   "PBE/def2-SVP (PySCF, the recipe of datasets/small-dft)")
    p.add_argument("--temperature", type=float, nargs="+", default=list(d["temperatures"]), metavar="K",
                   help="MD temperatures (K)")
    p.add_argument("--rounds", type=int, default=d["rounds"], help="most rounds")
    p.add_argument("--budget-labels", type=int, default=d["budget_labels"], help="most labels, seed frames included")
    p.add_argument("--per-round", type=int, default=d["per_round"], help="most frames labelled per round")
    p.add_argument("--max-force-std", type=float, default=d["max_force_std"],
                   help="per-atom force spread (eV/Å) above which a frame is a candidate")
    p.add_argument("--hard-force-std", type=float, default=d["hard_force_std"],
                   help="spread (eV/Å) at which a trajectory rolls back (or stops); that frame is never labelled")
    p.add_argument("--rollbacks", type=int, default=d["rollbacks"],
                   help=f"times a trajectory at the hard limit goes back {ROLLBACK_FRAMES} frames with new velocities before it stops")
    p.add_argument("--drive", choices=list(DRIVES), default=d["drive"],
                   help="exploration MD moves on each member in turn (its own surface, judged by the others) or on the committee's mean")
    p.add_argument("--select", choices=list(SELECTIONS), default=d["select"],
                   help="spread, or random frames of the same MD (the baseline)")
    p.add_argument("--trajectories", type=int, default=d["trajectories"], help="trajectories per temperature and round")
    p.add_argument("--steps", type=int, default=d["steps"], help="MD steps per trajectory")
    p.add_argument("--timestep", type=float, default=d["timestep_fs"], help="MD time step (fs)")
    p.add_argument("--interval", type=int, default=d["interval"], help="MD steps between candidate frames")
    p.add_argument("--min-separation", type=float, default=d["min_separation_fs"],
                   help="fs between two selected frames of one trajectory")
    p.add_argument("--min-distance", type=float, default=d["min_distance"],
                   help="RMS change of sorted interatomic distances (Å) between any two selected frames")
    p.add_argument("--committee-size", type=int, default=d["committee_size"], help="members grown from a single potential")
    p.add_argument("--committee-noise", type=float, default=d["committee_noise"],
                   help="relative weight noise that makes members grown from one potential differ")
    p.add_argument("--seed-frames", type=int, default=d["seed_frames"], help="labelled seed frames (START without labels)")
    p.add_argument("--retrain-epochs", type=int, default=d["retrain_epochs"], help="fine-tuning epochs per member and round")
    p.add_argument("--retrain-time", default=d["retrain_time"], help="fine-tuning wall clock per member and round, e.g. 5m")
    p.add_argument("--calibration-frames", type=int, default=d["calibration_frames"],
                   help="extra labels (never trained on) for the final spread-vs-error calibration")
    p.add_argument("--test", default=None, help="independent labelled frames (HDF5) to measure every round on")
    p.add_argument("--workers", type=int, default=d["workers"], help="processes (one thread each) for MD and labels")
    p.add_argument("--accelerator", default=d["accelerator"], help="Lightning accelerator for fine-tuning")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR")
    p.set_defaults(handler=run)


def run(args) -> int:
    from gdlphys.learn import LearnConfig, learn

    config = LearnConfig(
        label=args.label, temperatures=tuple(args.temperature), rounds=args.rounds, budget_labels=args.budget_labels,
        per_round=args.per_round, max_force_std=args.max_force_std, hard_force_std=args.hard_force_std,
        rollbacks=args.rollbacks, drive=args.drive,
        trajectories=args.trajectories, steps=args.steps, timestep_fs=args.timestep, interval=args.interval,
        min_separation_fs=args.min_separation, min_distance=args.min_distance, select=args.select,
        committee_size=args.committee_size, committee_noise=args.committee_noise, seed_frames=args.seed_frames, retrain_epochs=args.retrain_epochs,
        retrain_time=args.retrain_time, calibration_frames=args.calibration_frames, workers=args.workers,
        accelerator=args.accelerator, seed=args.seed, progress=not args.quiet,
    )
    result = learn(args.start, args.potential, args.output, config=config, test=args.test)
    print(f"{result.finished} after {len(result.rounds)} rounds and {result.labels_used} labels; "
          f"potential: {result.potential_path}", file=sys.stderr)
    return 0

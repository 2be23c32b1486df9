"""Long NVE energy drift of the two trained aspirin models, gdlphys and MACE side by side.

`gdlphys bench md --drift-ps T` runs the two codes one after the other; over 10 ps at 0.5 fs
(20,000 steps each) that is more than an hour on one core. This script runs them at the same
time, one thread each (same integrator, time step, start structure and velocities), so it takes
as long as the slower one. It needs the models the accuracy benchmark trained
(`gdlphys bench accuracy` -> bench-results/work/accuracy/) and the md structures
(`gdlphys bench md` -> bench-results/work/md/aspirin-21.xyz).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nve_drift.py --ps 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import torch

from gdlphys.bench.md import (
    TEMPERATURE_K,
    TIMESTEP_FS,
    drift_plot,
    drift_table,
    initialise_velocities,
    nve_drift,
)
from gdlphys.bench.peers import DEFAULT_PEER_PYTHON, PEER_SCRIPTS, thread_environment
from gdlphys.calculator import GDLCalculator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ps", type=float, default=10.0, help="NVE length in ps (default 10)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="the bench output folder")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="gdlphys through torch.compile (the same model, faster steps)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    accuracy, md = args.out / "work" / "accuracy", args.out / "work" / "md"
    ours_model, mace_model = accuracy / "gdlphys" / "potential.pt", json.loads((accuracy / "mace-train.json").read_text())["model"]
    structure = md / "aspirin-21.xyz"
    steps = round(args.ps * 1000 / TIMESTEP_FS)
    result = md / "mace-drift.json"
    result.unlink(missing_ok=True)
    command = [str(args.peer_python), str(PEER_SCRIPTS / "mace_md.py"), "--model", mace_model, "--structures", str(structure),
               "--timestep-fs", str(TIMESTEP_FS), "--temperature", str(TEMPERATURE_K), "--seed", str(args.seed),
               "--min-seconds", "0.1", "--max-steps", "2", "--drift-steps", str(steps), "--result", str(result)]
    log = open(md / "mace-drift.log", "w")  # noqa: SIM115 - open while the child runs
    started = time.perf_counter()
    peer = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=thread_environment(1))
    print(f"NVE {args.ps:g} ps ({steps} steps of {TIMESTEP_FS} fs), gdlphys here and MACE in pid {peer.pid} ...", file=sys.stderr)
    atoms = ase.io.read(structure)
    atoms.calc = GDLCalculator(str(ours_model), dtype="float32", compile=args.compile)
    initialise_velocities(atoms, TEMPERATURE_K, args.seed)
    ours = nve_drift(atoms, TIMESTEP_FS, steps)
    summary = {k: v for k, v in ours.items() if not k.startswith("trace")}
    print(f"gdlphys done after {time.perf_counter() - started:.0f} s: {summary}", file=sys.stderr)
    if peer.wait() != 0 or not result.is_file():
        raise SystemExit(f"MACE's run failed; see {md / 'mace-drift.log'}")
    mace = json.loads(result.read_text())
    table = drift_table({"drift": ours}, mace, steps, "trained by the accuracy benchmark (bench-results/work/accuracy)")
    report = {"table": table.to_dict(), "gdlphys": ours, "MACE": mace["drift"], "wall_s": time.perf_counter() - started}
    (args.out / "nve-drift.json").write_text(json.dumps(report, indent=1))
    drift_plot(args.out / "nve-drift.png", ours, mace["drift"], steps)
    print(table.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job of gdlphys on a shipped default, in a few minutes on a laptop CPU.

1. look at the shipped GFN2-xTB ethanol dataset,
2. train a small equivariant potential on it (progress bar; resumable),
3. evaluate it on held-out frames (MAE/RMSE table and a parity plot),
4. run 1 ps of NVE molecular dynamics through the ASE calculator (drift, steps/s).

Every step is the `gdlphys` command a user would type; run it with `make demo`.
Set GDLPHYS_DEMO_TIME (e.g. 1m) to change the training budget.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from gdlphys.cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets" / "ethanol-xtb"
RUN = Path(os.environ.get("GDLPHYS_DEMO_DIR", ROOT / "demo-run"))
BUDGET = os.environ.get("GDLPHYS_DEMO_TIME", "4m")


def step(title: str, *args: str) -> None:
    print(f"\n=== {title}\n$ gdlphys {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    status = main(list(args))
    if status:
        sys.exit(status)
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    step("The data: GFN2-xTB Langevin MD frames of ethanol", "data", "info", str(DATA / "train.h5"))
    step(
        f"Train a small equivariant potential for {BUDGET}",
        "train", "--train", str(DATA / "train.h5"), "--config", str(ROOT / "examples" / "ethanol-small.yaml"),
        "--max-time", BUDGET, "-o", str(RUN),
    )
    step(
        "Evaluate on held-out frames (another trajectory)",
        "eval", str(RUN), str(DATA / "test.h5"), "--plot", str(RUN / "parity.png"),
    )
    step(
        "1 ps of NVE molecular dynamics through the ASE calculator (float64)",
        "md", str(RUN), str(DATA / "ethanol.xyz"), "--steps", "2000", "--dt", "0.5", "--temperature", "300",
        "--ensemble", "nve", "--traj", str(RUN / "md.traj"),
    )
    print(f"\nDone. Learning curve: {RUN / 'learning_curve.png'}; parity plot: {RUN / 'parity.png'}; "
          f"trajectory: {RUN / 'md.traj'} (view with `ase gui`).")

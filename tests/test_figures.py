"""Figures are drawn without pyplot: plotting leaves the caller's backend and pyplot's figures as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import numpy as np
import matplotlib
from gdlphys.train.plots import plot_parity
from gdlphys.bench.report import bar_panels

rng = np.random.default_rng(0)
e, f = rng.normal(size=5), rng.normal(size=(5, 3))
plot_parity((e, e + 0.01), (f, f + 0.01), sys.argv[1] + "/parity.png", title="t")
bar_panels(__import__("pathlib").Path(sys.argv[1]) / "bars.png", "t", [("x", {"gdlphys": 1.0, "MACE": 2.0})])
pyplot = sys.modules.get("matplotlib.pyplot")  # torchmetrics imports it; we must leave no figure there
assert pyplot is None or not pyplot.get_fignums(), "figures left open in pyplot"
print(matplotlib.get_backend())
"""


def test_plots_leave_the_backend_alone(tmp_path):
    backend = "pdf"  # the caller's choice, not Agg: matplotlib.use("Agg") would show
    env = {**os.environ, "MPLBACKEND": backend, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == backend
    for name in ("parity.png", "bars.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

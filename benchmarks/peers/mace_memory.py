"""Peak memory of one energy-and-forces call through mace-torch's ASE calculator, at its defaults.

Runs in the peer environment (never imports gdlphys), one structure per process, so the
peak resident memory belongs to that call (restarted after the imports and the model).

    python mace_memory.py --model mace.model --structure box.xyz --result out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _rss():
    """gdlphys/bench/rss.py loaded by its path: the same peak measurement as the gdlphys side,
    without importing gdlphys (whose e3nn differs from MACE's)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "gdlphys" / "bench" / "rss.py"
    spec = importlib.util.spec_from_file_location("gdlphys_bench_rss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rss = _rss()
reset_peak, peak_rss_gb = rss.reset_peak, rss.peak_rss_gb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--structure", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import ase.io
    from mace.calculators import MACECalculator

    atoms = ase.io.read(args.structure)
    calc = MACECalculator(model_paths=str(args.model), device=args.device, default_dtype="float32")
    loaded = reset_peak()
    started = time.perf_counter()
    calc.get_forces(atoms)
    seconds = time.perf_counter() - started
    result = {"n_atoms": len(atoms), "seconds": seconds, "loaded_rss_gb": loaded, "peak_rss_gb": peak_rss_gb()}
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

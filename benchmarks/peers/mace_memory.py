"""Peak memory of one energy-and-forces call through mace-torch's ASE calculator, at its defaults.

Runs in the peer environment (never imports gdlphys), one structure per process, so the
peak resident memory belongs to that call (restarted after the imports and the model).

    python mace_memory.py --model mace.model --structure box.xyz --result out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def _status_gb(field: str) -> float | None:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 2**20 for line in lines if line.startswith(field + ":")), None)


def reset_peak() -> float:
    """As gdlphys.bench.memory.reset_peak: VmHWM restarted (clear_refs 5); the memory now, GB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_gb("VmRSS") or peak_rss_gb()


def peak_rss_gb() -> float:
    return _status_gb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


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

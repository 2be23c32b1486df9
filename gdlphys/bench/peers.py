"""The peer environment (MACE, vesin, matscipy) and its scripts, run as subprocesses that answer in JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]  # the peer scripts are files of the checkout, not package data
PEER_SCRIPTS = _REPO_ROOT / "benchmarks" / "peers"
DEFAULT_PEER_PYTHON = _REPO_ROOT / ".bench" / "venv" / "bin" / "python"
MAKE_HINT = "create it with `make bench-env` (a venv in .bench/venv with mace-torch 0.3.16, vesin and matscipy), or give --peer-python"


class PeerError(RuntimeError):
    """A peer script failed; the message names its log."""


def thread_environment(threads: int) -> dict[str, str]:
    """Environment of a child process limited to ``threads`` CPU threads (OpenMP, MKL, OpenBLAS)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def find_peer_python(peer_python: str | Path | None) -> Path:
    """The peer environment's interpreter, checked to import mace, vesin and matscipy."""
    python = Path(peer_python) if peer_python else DEFAULT_PEER_PYTHON
    if not python.is_file():
        raise FileNotFoundError(f"the benchmark peer environment is missing: no {python}; {MAKE_HINT}")
    if not PEER_SCRIPTS.is_dir():
        raise FileNotFoundError(f"no peer scripts in {PEER_SCRIPTS}: the benchmarks run from a source checkout")
    probe = subprocess.run(
        [str(python), "-c", "import mace, vesin, matscipy; print(mace.__version__)"],
        check=False, capture_output=True, text=True,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise FileNotFoundError(f"the peer environment {python} cannot import mace, vesin and matscipy ({last}); {MAKE_HINT}")
    return python


def run_peer(
    python: Path, script: str, arguments: list[str], result: Path, log: Path, threads: int, what: str,
    timeout_s: float | None = None,
) -> dict:
    """Run ``benchmarks/peers/<script>`` with ``arguments`` (+ ``--result``); return its JSON.

    Its stdout (MACE's own logging) goes to ``log``; its stderr (short progress lines)
    comes through to ours.
    """
    result.unlink(missing_ok=True)
    command = [str(python), str(PEER_SCRIPTS / script), *arguments, "--result", str(result)]
    env = thread_environment(threads)
    env["PYTHONWARNINGS"] = "ignore"  # e3nn and torch warn at import; the log keeps what matters
    start = time.perf_counter()
    with open(log, "w") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        try:
            process = subprocess.run(command, check=False, stdout=handle, stderr=sys.stderr, env=env, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PeerError(f"{what} did not finish within {timeout_s:.0f} s; see {log}") from None
    if process.returncode != 0 or not result.is_file():
        raise PeerError(f"{what} failed (exit status {process.returncode}); see {log}")
    answer = json.loads(result.read_text())
    answer.setdefault("wall_s", time.perf_counter() - start)
    return answer

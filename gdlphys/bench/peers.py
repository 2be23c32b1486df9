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


def thread_environment(threads: int | None) -> dict[str, str]:
    """Environment of a child process limited to ``threads`` CPU threads (OpenMP, MKL, OpenBLAS);
    None: no limit, the child's libraries choose for themselves (their defaults)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if threads is None:
            env.pop(name, None)
        else:
            env[name] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def default_torch_threads() -> int:
    """``torch.get_num_threads()`` in a fresh Python process with no thread limit in its environment:
    what a user's script gets. The benchmark's own process has set its threads (``--threads``)."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           check=True, capture_output=True, text=True, env=thread_environment(None))
    return int(probe.stdout.split()[-1])


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


class PeerRun:
    """A peer script running in the background; ``finish()`` waits for it and returns its JSON."""

    def __init__(self, python: Path, script: str, arguments: list[str], result: Path, log: Path, threads: int | None, what: str) -> None:
        result.unlink(missing_ok=True)
        self.result, self.log, self.what = result, log, what
        command = [str(python), str(PEER_SCRIPTS / script), *arguments, "--result", str(result)]
        env = thread_environment(threads)
        env["PYTHONWARNINGS"] = "ignore"  # e3nn and torch warn at import; the log keeps what matters
        self.start = time.perf_counter()
        self._handle = open(log, "w")  # noqa: SIM115 - open while the child runs
        self._handle.write("$ " + " ".join(command) + "\n")
        self._handle.flush()
        self.process = subprocess.Popen(command, stdout=self._handle, stderr=sys.stderr, env=env)

    def finish(self, timeout_s: float | None = None) -> dict:
        try:
            returncode = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise PeerError(f"{self.what} did not finish within {timeout_s:.0f} s; see {self.log}") from None
        finally:
            self._handle.close()
        if returncode != 0 or not self.result.is_file():
            raise PeerError(f"{self.what} failed (exit status {returncode}); see {self.log}")
        answer = json.loads(self.result.read_text())
        answer.setdefault("wall_s", time.perf_counter() - self.start)
        return answer

    def stop(self) -> None:
        """Kill it (our side failed: nothing is left running)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._handle.close()


def run_peer(
    python: Path, script: str, arguments: list[str], result: Path, log: Path, threads: int | None, what: str,
    timeout_s: float | None = None,
) -> dict:
    """Run ``benchmarks/peers/<script>`` with ``arguments`` (+ ``--result``); return its JSON.

    Its stdout (MACE's own logging) goes to ``log``; its stderr (short progress lines)
    comes through to ours.
    """
    return PeerRun(python, script, arguments, result, log, threads, what).finish(timeout_s)

"""Resident memory of this process: its peak, restartable (Linux). Standard library only, so
the peer scripts (which import nothing of gdlphys) load this very file by its path."""

from __future__ import annotations

import resource
from pathlib import Path


def _status_gb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in GB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def reset_peak() -> float:
    """Start the peak resident memory afresh (Linux: clear_refs 5 resets VmHWM); the memory now, GB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_gb("VmRSS") or peak_rss_gb()


def peak_rss_gb() -> float:
    """This process's peak resident memory since the last reset_peak (else since it began)."""
    return _status_gb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

"""CPU threads for a model call: how many (:class:`ThreadPolicy`), set only around the call (:func:`using_threads`).

Intra-op threads pay only on cores nobody else wants, and little on small work: on idle cores two
threads are 1.1x one at 21 atoms, 1.4-1.6x from 42. As soon as another process runs on the cores,
OpenMP threads spin at every barrier for a thread the scheduler has parked, and a call takes
2-45x longer, at every size measured (docs/benchmarks.md, "Threads"). One policy for the
calculator, ``predict`` and the command line. Inter-op threads are left alone: torch fixes them
once per process, and eager models do not use them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch

SMALL_WORK_ATOMS = 300  # atoms per step below which a whole run (training, a CLI run) takes one thread, idle cores or not
CALL_SMALL_WORK_ATOMS = 100  # the same for a policy that looks again every call (the calculator, predict)
WINDOW_S = 1.0  # how often the load of other processes is read again
FIRST_WINDOW_S = 0.1  # the first reading waits this long (ten clock ticks of /proc/stat)
STRAY_CORES = 0.2  # CPU time of others (shells, daemons) below which a core still counts as idle


def affinity_cores() -> int:
    """Cores this process may run on (its CPU affinity): what worker processes of one thread each may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def usable_cores() -> int:
    """Cores this process's threads may use: its CPU affinity, capped by OMP_NUM_THREADS when the user set it."""
    cores = affinity_cores()
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:  # unset or not a number: no cap
        cap = cores
    return max(1, min(cores, cap))


def threads_for(n_atoms: float, available: int | None = None, small_work_atoms: int = SMALL_WORK_ATOMS) -> int:
    """Intra-op threads for a model call on ``n_atoms`` atoms (a batch: its total) with ``available`` cores
    free (default: :func:`usable_cores`): one below ``small_work_atoms``, every available core above."""
    available = usable_cores() if available is None else max(1, int(available))
    return 1 if n_atoms < small_work_atoms else available


class _Reading(NamedTuple):
    wall: float  # s, monotonic
    busy: float  # CPU-seconds the process's cores were busy since boot, every process together
    own: float  # CPU-seconds of this process, all its threads


class IdleCores:
    """How many of this process's cores the other processes leave idle, from /proc/stat.

    Each reading covers the time since the previous one (at least WINDOW_S; the first one waits
    FIRST_WINDOW_S). This process's own CPU time is subtracted, so its threads never count
    against it; niced work counts as busy (it still gets slices, and a thread parked for one
    holds up every barrier).
    Without /proc/stat (not Linux) every usable core counts as idle.
    """

    def __init__(self) -> None:
        self._cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self._last: _Reading | None = None
        self._others: float | None = None  # cores' worth of CPU time others used in the last window

    def _read(self) -> _Reading | None:
        try:
            with open("/proc/stat") as handle:
                lines = handle.readlines()
        except OSError:
            return None
        ticks = 0
        for line in lines:
            name, *fields = line.split()
            if name[:3] == "cpu" and name[3:].isdigit() and (self._cpus is None or int(name[3:]) in self._cpus):
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
                ticks += user + nice + system + irq + softirq + steal
        return _Reading(time.monotonic(), ticks / os.sysconf("SC_CLK_TCK"), time.process_time())

    def others(self) -> float:
        """Cores' worth of CPU time the other processes used on this process's cores, lately."""
        if self._others is not None and (self._last is None or time.monotonic() - self._last.wall < WINDOW_S):
            return self._others  # the latest window's figure (or, without /proc/stat, 0 for good)
        if self._last is None:
            self._last = self._read()
            if self._last is None:
                self._others = 0.0
                return 0.0
            time.sleep(FIRST_WINDOW_S)
        now = self._read()
        if now is None:
            return self._others or 0.0
        elapsed = now.wall - self._last.wall
        self._others = max(0.0, (now.busy - self._last.busy - (now.own - self._last.own)) / elapsed)
        self._last = now
        return self._others

    def __call__(self, usable: int) -> int:
        """``usable`` less the cores the others keep busy; at least one."""
        busy = math.ceil(max(0.0, self.others() - STRAY_CORES))
        return max(1, usable - busy)


class ThreadPolicy:
    """The threads of each call of one calculator or run: :func:`threads_for` the call's atoms, with the
    usable cores as available, no more than the caller's ``torch.get_num_threads()`` (torch's default
    is every core; a script that set fewer keeps them), and no more than other processes leave idle
    (:class:`IdleCores`, read only when more than one thread would be chosen).

    ``small_work_atoms``: below it, one thread. A run that chooses once for its whole length
    (training, a command) keeps :data:`SMALL_WORK_ATOMS`: a core that turns busy later would cost
    it 2-45x per step to the end. A policy asked again at every call (the calculator, predict) takes
    :data:`CALL_SMALL_WORK_ATOMS`: on idle cores two threads are 1.4-1.6x one from about 40 atoms,
    and a core that turns busy costs it only until the next reading of the load (a second)."""

    def __init__(self, small_work_atoms: int = SMALL_WORK_ATOMS) -> None:
        self.idle_cores = IdleCores()
        self.small_work_atoms = int(small_work_atoms)

    def __call__(self, n_atoms: float) -> int:
        usable = usable_cores()
        wanted = threads_for(n_atoms, min(usable, torch.get_num_threads()), self.small_work_atoms)
        return wanted if wanted == 1 else min(wanted, self.idle_cores(usable))


@contextmanager
def using_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the body, then the caller's value again (switched only when different)."""
    previous = torch.get_num_threads()
    n = max(1, int(n))
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)

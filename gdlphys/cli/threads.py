"""CPU thread policy of the command line (the process's entry point, so the choice is ours).

Intra-op threads only pay off on big tensors. On molecules they gain nothing on a quiet
machine and cost several times as soon as another process shares the cores (OpenMP
spin-waits; docs/benchmarks.md). OMP_NUM_THREADS or --threads override the choice.
"""

from __future__ import annotations

import os

import torch

SMALL_WORK_ATOMS = 300  # atoms handled per model call below which one thread is the default


def set_threads(requested: int | None, atoms_per_call: float) -> None:
    if requested is not None:
        torch.set_num_threads(max(1, requested))
    elif "OMP_NUM_THREADS" not in os.environ and atoms_per_call < SMALL_WORK_ATOMS:
        torch.set_num_threads(1)

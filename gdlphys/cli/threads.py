"""CPU threads of the command line: the process's entry point, so the choice holds for the whole run.

The policy is gdlphys.threads' (one thread below 300 atoms per model call; above, the usable
cores no other process is busy on), the same the calculator and ``predict`` apply around each
call; --threads overrides it.
"""

from __future__ import annotations

import torch

from gdlphys.threads import ThreadPolicy


def set_threads(requested: int | None, atoms_per_call: float) -> None:
    torch.set_num_threads(max(1, requested) if requested is not None else ThreadPolicy()(atoms_per_call))

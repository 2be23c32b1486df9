"""The options every benchmark reads, as one typed value."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

BENCHMARKS = ("accuracy", "md", "memory", "train", "neighbours")


@dataclass
class BenchOptions:
    """How to run the benchmarks.

    Attributes:
        out: folder for ``<name>.json``, ``<name>.png`` and ``work/`` (runs, models, logs).
        budget_min: wall-clock training budget of each code in the accuracy benchmark, minutes.
        quick: a smoke run of a few minutes: small data, tiny budgets, small sizes.
        peer_python: the Python of the peer environment (MACE, vesin, matscipy).
        threads: CPU threads given to each code (OMP_NUM_THREADS and torch), the same for both.
        device: "cpu" or "cuda", for both codes.
        drift_ps: NVE run length for the energy-drift comparison of the md benchmark (0: none).
        compile: md: also time gdlphys through ``torch.compile`` (GDLCalculator(compile=True));
            None: yes, except with ``quick`` (compiling from an empty cache takes minutes).
        seed: seeds data splits, weights and velocities.
        parallel: accuracy: train the two codes at the same time, each with ``threads`` threads
            (on a machine with at least twice that many free cores: half the wall time).
        at_defaults: md: also each code at its own defaults (threads and dtype: GDLCalculator's
            per-call thread policy, MACECalculator with torch's default threads), on the machine as
            it is and with one core busy (a second process spinning), as a user's script meets them.
            accuracy: each code trains and evaluates at its own use of the machine (``gdlphys train``
            with no ``--threads``: data-parallel processes on the idle cores; MACE with torch's
            default threads) instead of ``threads`` each.
        dataset: accuracy: the frames both codes train and test on: a shipped dataset's name or a
            folder with ``train.h5``, ``valid.h5`` and ``test.h5`` (default aspirin-xtb).
    """

    out: Path = Path("bench-results")
    budget_min: float = 15.0
    quick: bool = False
    peer_python: Path | None = None
    threads: int = 1
    device: str = "cpu"
    drift_ps: float = 0.0
    seed: int = 0
    compile: bool | None = None
    parallel: bool = False
    at_defaults: bool = False
    dataset: str = "aspirin-xtb"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.compile is None:
            self.compile = not self.quick
        if self.budget_min <= 0:
            raise ValueError(f"--budget-min must be positive, got {self.budget_min}")
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.drift_ps < 0:
            raise ValueError(f"--drift-ps must be >= 0, got {self.drift_ps}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device must be cpu or cuda, got {self.device!r}")

    def work_dir(self, benchmark: str) -> Path:
        path = self.out / "work" / benchmark
        path.mkdir(parents=True, exist_ok=True)
        return path

    def to_dict(self) -> dict:
        values = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}

"""The options of an active-learning run (:class:`LearnConfig`), with their defaults and checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["DRIVES", "LABELS", "ROLLBACK_FRAMES", "LearnConfig", "SELECTIONS"]

LABELS = ("xtb", "dft")  # GFN2-xTB (tblite); PBE/def2-SVP (PySCF, the recipe of datasets/small-dft)
SELECTIONS = ("spread", "random")  # committee force spread; uniform draw (the baseline)
DRIVES = ("members", "mean")  # what exploration MD moves on: each member in turn; the committee's mean
# Settings that a resumed run may change: how long it goes on, how it reports, how much it parallelises.
RESUMABLE_CHANGES = ("rounds", "budget_labels", "workers", "progress", "accelerator", "calibration_frames",
                     "retrain_epochs", "retrain_time")
ROLLBACK_FRAMES = 5  # a rollback at the hard limit returns this many kept frames (x interval steps) before it


@dataclass
class LearnConfig:
    """How the loop explores, selects, labels and retrains.

    Attributes:
        label: level of theory of the new labels: "xtb" (GFN2-xTB) or "dft" (PBE/def2-SVP).
        temperatures: MD temperatures (K); each gets ``trajectories`` trajectories a round.
        rounds: most explore -> select -> label -> retrain rounds.
        budget_labels: most labels, seed frames included (the loop stops when they are spent).
        per_round: most frames selected (and labelled) in one round.
        max_force_std: a frame is a candidate when its largest per-atom committee force spread
            (eV/Å) passes this; a full-length round without one ends the loop.
        hard_force_std: where the spread passes this (eV/Å) the frame is never labelled (nonsense
            geometry) and the trajectory rolls back (``rollbacks``) or stops.
        rollbacks: times a trajectory at the hard limit returns to the kept frame ROLLBACK_FRAMES frames
            earlier with new velocities and goes on, before it stops (0: it stops at once).
        drive: the forces exploration MD moves on: "members" (each trajectory on one member, the
            members in turn, counted on across rounds, so every member's own surface is explored,
            the one shipped included, and the others judge it) or "mean" (the committee's mean
            forces). The spread is the whole committee's either way.
        trajectories: Langevin trajectories per temperature and round.
        steps: MD steps per trajectory.
        timestep_fs: MD time step (fs).
        interval: MD steps between candidate frames.
        friction: Langevin friction (1/fs).
        min_separation_fs: two selected frames of one trajectory lie at least this far apart in time.
        min_distance: two selected frames differ by at least this RMS change of their sorted
            interatomic distances (Å): no near-copies from different trajectories.
        select: "spread" (the committee's force spread) or "random" (frames drawn uniformly
            from the same kind of MD, the baseline; it stops at the budget or ``rounds``).
        committee_size: members fine-tuned (different seeds) from a single starting potential.
        committee_noise: relative noise on the weights of each such member but the first before
            its first fine-tuning (:func:`gdlphys.learn.committee.perturbed_starts`): what makes
            the members differ.
        seed_frames: labelled frames the committee starts from where START has no labels
            (MD of the starting potential at the first temperature).
        retrain_epochs: fine-tuning epochs per member and round (None: ``retrain_time`` only).
        retrain_time: wall-clock budget per member and round ("5m"; None: ``retrain_epochs`` only).
            40 s by default: the budget of the acetamide run that converged (docs/learn.md); a
            fixed number of epochs is a few steps on a round's handful of frames, and many on a
            large set.
        calibration_frames: frames of the last exploration labelled (beyond the budget, never
            trained on) to measure how the final committee's spread ranks its true error.
        workers: processes (one thread each) for MD trajectories and labels.
        accelerator: Lightning accelerator of the retraining ("auto", "cpu", "gpu").
        seed: seeds MD, selection and the committee's fine-tuning.
    """

    label: str = "xtb"
    temperatures: tuple[float, ...] = (300.0,)
    rounds: int = 10
    budget_labels: int = 200
    per_round: int = 20
    max_force_std: float = 0.15
    hard_force_std: float = 1.0
    rollbacks: int = 3
    drive: str = "members"
    trajectories: int = 4
    steps: int = 2000
    timestep_fs: float = 0.5
    interval: int = 10
    friction: float = 0.01
    min_separation_fs: float = 50.0
    min_distance: float = 0.05
    select: str = "spread"
    committee_size: int = 3
    committee_noise: float = 0.05
    seed_frames: int = 16
    retrain_epochs: int | None = None
    retrain_time: str | None = "40s"
    calibration_frames: int = 16
    workers: int = 1
    accelerator: str = "auto"
    seed: int = 0
    progress: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        self.temperatures = tuple(float(t) for t in self.temperatures)
        if self.label not in LABELS:
            raise ValueError(f"unknown label method {self.label!r}; choose from {', '.join(LABELS)}")
        if self.drive not in DRIVES:
            raise ValueError(f"unknown drive {self.drive!r}; choose from {', '.join(DRIVES)}")
        if self.select not in SELECTIONS:
            raise ValueError(f"unknown selection {self.select!r}; choose from {', '.join(SELECTIONS)}")
        if not self.temperatures or min(self.temperatures) <= 0:
            raise ValueError(f"temperatures must be positive (K), got {list(self.temperatures)}")
        for name in ("rounds", "per_round", "trajectories", "steps", "interval", "workers", "committee_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.committee_size < 2:
            raise ValueError(f"committee_size must be >= 2 (a spread needs two members), got {self.committee_size}")
        if self.budget_labels < self.per_round:
            raise ValueError(f"budget_labels ({self.budget_labels}) is smaller than per_round ({self.per_round}): "
                             "not one full round fits the budget")
        if not 0 < self.max_force_std < self.hard_force_std:
            raise ValueError(f"need 0 < max_force_std < hard_force_std, got {self.max_force_std} and {self.hard_force_std} eV/Å")
        if self.timestep_fs <= 0 or self.friction < 0 or self.min_separation_fs < 0 or self.min_distance < 0:
            raise ValueError("timestep_fs must be positive; friction, min_separation_fs and min_distance >= 0")
        if self.rollbacks < 0:
            raise ValueError(f"rollbacks must be >= 0, got {self.rollbacks}")
        if self.seed_frames < 2:
            raise ValueError(f"seed_frames must be >= 2 (one to train on, one to validate), got {self.seed_frames}")
        if self.retrain_epochs is None and self.retrain_time is None:
            raise ValueError("give retrain_epochs or retrain_time (or both)")
        if self.retrain_epochs is not None and self.retrain_epochs < 1:
            raise ValueError(f"retrain_epochs must be >= 1, got {self.retrain_epochs}")
        if self.committee_noise < 0:
            raise ValueError(f"committee_noise must be >= 0, got {self.committee_noise}")
        if self.calibration_frames < 0:
            raise ValueError(f"calibration_frames must be >= 0, got {self.calibration_frames}")

    @property
    def method(self) -> str:
        """The level of theory as HDF5 files record it."""
        from gdlphys.data.dft import dft_method

        return "GFN2-xTB" if self.label == "xtb" else dft_method()

    def to_dict(self) -> dict:
        values = asdict(self)
        values["temperatures"] = list(self.temperatures)
        del values["progress"]
        return values

    def fixed_settings(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}

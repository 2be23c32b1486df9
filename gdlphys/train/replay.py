"""Replay for fine-tuning: frames of the original domain mixed into the new training set, so
that what the potential knew is rehearsed while it learns the new chemistry.

Each epoch draws its replay frames afresh from the whole replay pool (:class:`ReplayDataModule`),
so a small share of replay per epoch still rehearses the whole original domain, and the
training batches mark which frames are replayed (the loss may weight them).

Where the replay frames come from, first match wins:

1. the file the user gives (``labels="data"``: its own labels; ``"parent"``: relabelled by the
   parent potential; ``"auto"``: its labels when every frame has energy and forces, else the
   parent's);
2. the parent's own training data, found through the SHA-256 the potential file records
   (its ``train_file``, or a shipped dataset with that hash);
3. the structures of the original-domain test file, labelled by the parent itself: every
   other frame is replayed, the rest stay held out to measure forgetting on.

Frames labelled by the parent are a self-distillation target: the fine-tuned potential is
asked to keep predicting what the parent predicted there, which is exactly "do not forget".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from gdlphys import keys
from gdlphys.conversion import batch_to_atoms
from gdlphys.data.datamodule import FramesDataModule, GraphDataset, ShardedSampler, file_sha256
from gdlphys.data.hdf5 import FrameReader, read_hdf5
from gdlphys.data.hdf5_writer import write_hdf5
from gdlphys.graph import collate
from gdlphys.models.potential import Potential
from gdlphys.paths import shipped_dirs
from gdlphys.train.loss import TERMS

REPLAY_LABELS = ("auto", "data", "parent")


@dataclass
class ReplaySource:
    """What a fine-tuning run replays (``path`` is None: no replay)."""

    path: Path | None  # the HDF5 file the DataModule draws replay frames from
    origin: str  # "given", "parent training data", "original-test structures" or "none"
    labels: str  # "data" (the file's labels) or "parent" (the parent potential's predictions)
    source: Path | None = None  # where the structures came from
    original_test: Path | None = None  # original-domain frames kept for measuring forgetting, if split here
    method: str | None = None  # level of theory of the replay energies (the parent's, for parent labels), if known

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def level_of_theory(path: str | Path | None) -> str | None:
    """The ``method`` a frame file records (e.g. ``GFN2-xTB``), or None."""
    if path is None:
        return None
    with FrameReader(path) as reader:
        method = reader.attrs.get("method")
    return str(method) if method else None


def fully_labelled(path: str | Path) -> bool:
    """Whether every frame of ``path`` carries an energy and forces."""
    with FrameReader(path) as reader:
        return all(reader.has("energy", k) and reader.has("forces", k) for k in range(len(reader)))


@torch.no_grad()
def label_with_potential(
    potential: Potential, source: str | Path, output: str | Path, indices: list[int] | None = None, batch_size: int = 32
) -> Path:
    """Write the structures of ``source`` (frames ``indices``) labelled with ``potential``'s
    energy and forces, and its dipole where it has a dipole head."""
    dataset = GraphDataset(source, potential.cutoff, potential.dtype, cache=False)
    if indices is not None:
        dataset = Subset(dataset, indices)
    was_training = potential.training
    potential.eval()
    frames: list[Atoms] = []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            with torch.enable_grad():
                out = potential(batch, compute_forces=True)
            predicted = {k: out[k] for k in (keys.ENERGY, keys.FORCES, keys.DIPOLE) if k in out}
            frames.extend(batch_to_atoms(batch, predicted))
    finally:
        potential.train(was_training)
    name = potential.source or "the parent potential"
    write_hdf5(output, frames, method=f"predictions of {name}", software="gdlphys")
    return Path(output)


def find_training_data(potential: Potential) -> Path | None:
    """The parent's training file, if it can be found and its SHA-256 matches the recorded one."""
    metadata = potential.metadata
    digest = metadata.get("training_data_sha256")
    if not digest:
        return None
    recorded = metadata.get("train_file")
    candidates = [Path(recorded)] if recorded else []
    for folder in shipped_dirs("datasets"):
        candidates.extend(sorted(folder.glob("*/*.h5")))
    for path in candidates:
        try:
            if path.is_file() and file_sha256(path) == digest:
                return path
        except OSError:
            continue
    return None


def resolve_replay(
    parent: Potential,
    run_dir: str | Path,
    replay: str | Path | None = None,
    labels: str = "auto",
    original_test: str | Path | None = None,
    find_parent_data: bool = True,
) -> ReplaySource:
    """Choose and, where needed, make (parent-labelled, in ``run_dir``) the replay file; see the module doc."""
    if labels not in REPLAY_LABELS:
        raise ValueError(f"replay labels must be one of {', '.join(REPLAY_LABELS)}, got {labels!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    relabelled = run_dir / "replay-parent-labels.h5"
    found = find_training_data(parent) if find_parent_data else None
    parent_method = level_of_theory(found)  # what the parent's own predictions are at, if its data is known
    if replay is not None:
        replay = Path(replay)
        use_parent = labels == "parent" or (labels == "auto" and not fully_labelled(replay))
        if use_parent:
            made = label_with_potential(parent, replay, relabelled)
            return ReplaySource(made, "given", "parent", replay, method=parent_method)
        return ReplaySource(replay, "given", "data", replay, method=level_of_theory(replay))
    if found is not None:
        if labels == "parent":
            made = label_with_potential(parent, found, relabelled)
            return ReplaySource(made, "parent training data", "parent", found, method=parent_method)
        return ReplaySource(found, "parent training data", "data", found, method=parent_method)
    if original_test is not None:
        original_test = Path(original_test)
        with FrameReader(original_test) as reader:
            n = len(reader)
        if n >= 2:
            replayed, kept = list(range(0, n, 2)), list(range(1, n, 2))
            label_with_potential(parent, original_test, relabelled, replayed)
            held_out = run_dir / "original-test-held-out.h5"
            write_hdf5(held_out, read_hdf5(original_test, index=kept), method="original-domain test frames")
            return ReplaySource(relabelled, "original-test structures", "parent", original_test, held_out, parent_method)
    return ReplaySource(None, "none", "data")


class _Tagged(Dataset):
    def __init__(self, dataset: Dataset, replay: bool) -> None:
        self.dataset, self.replay = dataset, replay

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index], self.replay


def _collate_tagged(items) -> dict[str, torch.Tensor]:
    """New and replayed graphs in one batch, ``keys.REPLAY`` marking the replayed ones.

    A label that only some graphs carry (e.g. dipoles of new frames next to replay frames without
    them) is kept: the others get zeros there and that term's weight 0 (``keys.DIPOLE_LOSS_WEIGHT``, ...)."""
    graphs = [dict(graph) for graph, _ in items]
    for term in TERMS.values():
        have = [term.key in graph for graph in graphs]
        if any(have) and not all(have):
            example = next(graph[term.key] for graph in graphs if term.key in graph)
            for graph, labelled in zip(graphs, have):
                if not labelled:
                    rows = graph[keys.POSITIONS].shape[0] if term.per_atom else 1
                    graph[term.key] = example.new_zeros((rows, *example.shape[1:]))
                graph[term.weight_key] = torch.tensor([1.0 if labelled else 0.0], dtype=example.dtype)
    for graph, (_, replay) in zip(graphs, items):
        graph[keys.REPLAY] = torch.tensor([replay], dtype=torch.bool)
    return collate(graphs)


class ReplaySampler(ShardedSampler):
    """Every new frame once per epoch, plus ``n_replay`` frames drawn afresh from the pool, shuffled
    together; a function of (seed, epoch) alone, so a resumed run draws what it would have drawn
    (sharded over data-parallel ranks as :class:`~gdlphys.data.datamodule.ShardedSampler` says)."""

    def __init__(self, n_new: int, n_pool: int, n_replay: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(seed, rank, world_size)
        self.n_new, self.n_pool, self.n_replay = int(n_new), int(n_pool), min(int(n_replay), int(n_pool))

    def total(self) -> int:
        return self.n_new + self.n_replay

    def epoch_order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        replay = self.n_new + rng.choice(self.n_pool, self.n_replay, replace=False)
        order = np.concatenate([np.arange(self.n_new), replay])
        rng.shuffle(order)
        return order


class ReplayDataModule(FramesDataModule):
    """The new frames, split as :class:`FramesDataModule` splits them, plus replay from ``replay``:
    each epoch ``replay_fraction`` of the training frames are replay frames drawn afresh from
    the pool (the replay file less ``hold_out`` seeded frames, at most a fifth of it, kept in
    ``replay_held_out`` for measuring forgetting). Training batches carry ``keys.REPLAY``."""

    def __init__(self, train, valid=None, *, replay=None, replay_fraction: float = 0.2, hold_out: int = 0, **options) -> None:
        super().__init__(train, valid, **options)  # FramesDataModule's own (fixed-subset) replay stays off
        if not 0.0 <= replay_fraction < 1.0:
            raise ValueError(f"replay_fraction must be in [0, 1), got {replay_fraction}")
        self.pool_path, self.pool_fraction, self.hold_out = (Path(replay) if replay else None), float(replay_fraction), int(hold_out)
        self.new_train_set: Dataset | None = None
        self.replay_per_epoch = 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        super().setup(stage)
        self.new_train_set = self.train_set
        if self.pool_path is None or self.pool_fraction == 0.0:
            return
        pool = GraphDataset(self.pool_path, self.cutoff, self.dtype)
        order = np.random.default_rng([self.seed, 1]).permutation(len(pool))
        n_held = min(self.hold_out, len(pool) // 5)  # most of the pool stays for rehearsal
        held, kept = np.sort(order[:n_held]), np.sort(order[n_held:])
        self.replay_set = Subset(pool, kept.tolist())
        self.replay_held_out = Subset(pool, held.tolist()) if len(held) else None
        wanted = round(self.pool_fraction / (1.0 - self.pool_fraction) * len(self.new_train_set))
        self.replay_per_epoch = min(wanted, len(self.replay_set))
        self.train_set = ConcatDataset([_Tagged(self.new_train_set, False), _Tagged(self.replay_set, True)])

    def train_dataloader(self) -> DataLoader:
        if self.replay_set is None:
            return super().train_dataloader()
        sampler = ReplaySampler(len(self.new_train_set), len(self.replay_set), self.replay_per_epoch, self.seed, *self.ranks())
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=sampler, collate_fn=_collate_tagged,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

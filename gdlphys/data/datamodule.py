"""Lightning DataModule: HDF5 frames -> graph dicts with neighbour lists -> batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset

from gdlphys.conversion import frame_to_graph
from gdlphys.data.finite import check_file_finite
from gdlphys.data.hdf5 import FrameReader
from gdlphys.graph import collate


def file_sha256(path: str | Path) -> str:
    """Content hash of a data file, recorded in every potential trained on it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def memory_limit_bytes() -> int:
    """What this process may use: the smaller of the memory available now and a cgroup limit."""
    limits = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    return min(limits) if limits else 8 << 30


def default_cache_bytes() -> int:
    """Graphs a dataset keeps in memory by default: a quarter of :func:`memory_limit_bytes`
    (``GDLPHYS_CACHE_MB`` overrides it; 0 streams every frame from the file)."""
    import os

    if os.environ.get("GDLPHYS_CACHE_MB"):
        return int(float(os.environ["GDLPHYS_CACHE_MB"]) * (1 << 20))
    return memory_limit_bytes() // 4


class GraphDataset(Dataset):
    """Frames of one HDF5 file as graph dicts; the file is opened lazily in each worker.

    Neighbour lists of a frame never change, so graphs are kept once built, up to
    ``cache_bytes`` (default :func:`default_cache_bytes`: a share of the memory this process may
    use, split between loader workers); past that, frames stream from the file, so a dataset
    larger than memory trains in bounded memory. A file holding a NaN or an infinity (written
    by an older gdlphys) fails here, naming the frame, key and atom.
    """

    def __init__(
        self, path: str | Path, cutoff: float, dtype: torch.dtype = torch.float32, cache: bool = True,
        cache_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.reader = FrameReader(self.path)
        check_file_finite(self.path)  # one vectorised pass over the columns, before any training step
        self.cutoff = float(cutoff)
        self.dtype = dtype
        self._cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None
        self.cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._budget_bytes: int | None = None  # fixed on first use, in the process that uses it

    def _budget(self) -> int:
        if self._budget_bytes is None:
            info = torch.utils.data.get_worker_info()
            shared = default_cache_bytes() // (info.num_workers if info is not None else 1)
            self._budget_bytes = int(self.cache_bytes) if self.cache_bytes is not None else shared
        return self._budget_bytes

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        try:
            graph = frame_to_graph(self.reader[index], self.cutoff, self.dtype)
        except ValueError as err:  # e.g. two atoms on top of each other: name the file and frame
            if str(self.path) in str(err):
                raise
            raise ValueError(f"{self.path}, frame {index}: {err}") from err
        if self._cache is not None:
            size = sum(t.numel() * t.element_size() for t in graph.values())
            if self._cached_bytes + size <= self._budget():
                self._cache[index] = graph
                self._cached_bytes += size
        return graph


class ShardedSampler(Sampler[int]):
    """An epoch's order of frames (:meth:`epoch_order`, a function of seed and epoch alone), of
    which rank ``rank`` of ``world_size`` data-parallel processes takes every ``world_size``-th.

    Lightning shards only the samplers it knows, so ours shard themselves. Every rank gets the
    same number of frames (the order is cut to a multiple of ``world_size``: uneven batch counts
    would hang DDP), and the interleaving makes step k of the ranks together see exactly the
    frames step k of one process with ``world_size`` times the batch would see.
    """

    def __init__(self, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size} processes")
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def total(self) -> int:
        """Frames in one epoch's order, before sharding."""
        raise NotImplementedError

    def epoch_order(self) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.total() // self.world_size

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        usable = len(order) - len(order) % self.world_size
        return iter(order[:usable][self.rank :: self.world_size].tolist())


class EpochShuffler(ShardedSampler):
    """A fresh permutation of the training frames each epoch, a function of (seed, epoch) alone.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from an end-of-epoch
    checkpoint draws exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(seed, rank, world_size)
        self.num_samples = int(num_samples)

    def total(self) -> int:
        return self.num_samples

    def epoch_order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)


class ShardedInOrder(Sampler[int]):
    """Frames in file order, every ``world_size``-th from ``rank`` on, without padding (validation:
    Lightning's DistributedSampler would repeat frames to even the ranks out and count them twice)."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(int(rank), int(num_samples), int(world_size)))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reproducible random split: the same (n, fraction, seed) always gives the same split."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(valid_fraction * n)))
    if n - n_valid < 1:
        raise ValueError(f"{n} frames are too few to hold out {valid_fraction:.0%} for validation")
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def replay_split(n_available: int, n_new: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded choice of replay frames: (used for training, held out), with ``fraction`` of the
    resulting training set drawn from the replay file (capped at what it holds)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"replay_fraction must be in [0, 1), got {fraction}")
    wanted = int(round(fraction / (1.0 - fraction) * n_new))
    order = np.random.default_rng([seed, 1]).permutation(n_available)
    return np.sort(order[:wanted]), np.sort(order[wanted:])


class FramesDataModule(L.LightningDataModule):
    """Training and validation frames; without a validation file, a seeded split of the training file.

    With ``replay`` (fine-tuning), a seeded ``replay_fraction`` of the training set is drawn
    from that file (frames of the original training data, against forgetting); validation
    stays on the new data, and the replay frames not drawn are kept in ``replay_held_out``.
    """

    def __init__(
        self,
        train: str | Path,
        valid: str | Path | None = None,
        cutoff: float = 5.0,
        batch_size: int = 8,
        valid_batch_size: int = 32,
        valid_fraction: float = 0.1,
        seed: int = 0,
        num_workers: int = 0,
        dtype: torch.dtype = torch.float32,
        replay: str | Path | None = None,
        replay_fraction: float = 0.2,
    ) -> None:
        super().__init__()
        self.replay_path, self.replay_fraction = (Path(replay) if replay else None), float(replay_fraction)
        self.train_path, self.valid_path = Path(train), (Path(valid) if valid else None)
        self.cutoff, self.dtype = cutoff, dtype
        self.batch_size, self.valid_batch_size = batch_size, valid_batch_size
        self.valid_fraction, self.seed, self.num_workers = valid_fraction, seed, num_workers
        self.train_set: Dataset | None = None
        self.valid_set: Dataset | None = None
        self.replay_set: Dataset | None = None
        self.replay_held_out: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full = GraphDataset(self.train_path, self.cutoff, self.dtype)
        if self.valid_path is not None:
            self.train_set, self.valid_set = full, GraphDataset(self.valid_path, self.cutoff, self.dtype)
        else:
            train_idx, valid_idx = split_indices(len(full), self.valid_fraction, self.seed)
            self.train_set, self.valid_set = Subset(full, train_idx.tolist()), Subset(full, valid_idx.tolist())
        if self.replay_path is not None:
            replay = GraphDataset(self.replay_path, self.cutoff, self.dtype)
            used, held_out = replay_split(len(replay), len(self.train_set), self.replay_fraction, self.seed)
            self.replay_set, self.replay_held_out = Subset(replay, used.tolist()), Subset(replay, held_out.tolist())
            self.train_set = ConcatDataset([self.train_set, self.replay_set])

    def ranks(self) -> tuple[int, int]:
        """(rank, world size) of the data-parallel run this module serves ((0, 1) outside one)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        rank, world = self.ranks()
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=EpochShuffler(len(self.train_set), self.seed, rank, world),
            collate_fn=collate, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        rank, world = self.ranks()
        return DataLoader(
            self.valid_set, batch_size=self.valid_batch_size, sampler=ShardedInOrder(len(self.valid_set), rank, world),
            collate_fn=collate, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

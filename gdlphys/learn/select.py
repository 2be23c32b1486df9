"""Which explored frames are labelled: the most uncertain ones, spread out (not ten neighbouring
frames of one excursion), or a uniform draw (the baseline that uses no spread)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["distance_descriptor", "select_by_spread", "select_random"]


def distance_descriptor(positions: np.ndarray) -> np.ndarray:
    """The sorted interatomic distances (Å) of one structure: invariant to rotation, translation and
    to swapping atoms, so two frames of one molecule compare without aligning them."""
    positions = np.asarray(positions, dtype=np.float64)
    i, j = np.triu_indices(len(positions), 1)
    return np.sort(np.linalg.norm(positions[i] - positions[j], axis=1))


def _too_close(a: np.ndarray, b: np.ndarray, min_distance: float) -> bool:
    """Near-copies: descriptors of one length (one molecule) within ``min_distance`` RMS."""
    if len(a) != len(b) or len(a) == 0:
        return False
    return float(np.sqrt(np.mean((a - b) ** 2))) < min_distance


def select_by_spread(
    spread: np.ndarray,
    trajectory: np.ndarray,
    time_fs: np.ndarray,
    descriptors: Sequence[np.ndarray],
    threshold: float,
    limit: int,
    min_separation_fs: float = 0.0,
    min_distance: float = 0.0,
) -> list[int]:
    """Indices of at most ``limit`` frames whose spread (eV/Å) passes ``threshold``, largest first,
    each at least ``min_separation_fs`` from every chosen frame of its trajectory and at least
    ``min_distance`` (:func:`distance_descriptor`, RMS Å) from every chosen frame at all."""
    spread, trajectory, time_fs = np.asarray(spread), np.asarray(trajectory), np.asarray(time_fs)
    if not len(spread) == len(trajectory) == len(time_fs) == len(descriptors):
        raise ValueError("spread, trajectory, time_fs and descriptors need one entry per frame")
    chosen: list[int] = []
    for k in np.argsort(-spread, kind="stable"):
        if len(chosen) >= limit or spread[k] <= threshold:
            break
        if any(trajectory[c] == trajectory[k] and abs(time_fs[c] - time_fs[k]) < min_separation_fs for c in chosen):
            continue
        if any(_too_close(descriptors[c], descriptors[k], min_distance) for c in chosen):
            continue
        chosen.append(int(k))
    return sorted(chosen)


def select_random(n_frames: int, limit: int, rng: np.random.Generator, exclude: Sequence[int] = ()) -> list[int]:
    """``limit`` indices drawn uniformly without replacement from ``n_frames`` (``exclude`` left out)."""
    pool = np.setdiff1d(np.arange(n_frames), np.asarray(exclude, dtype=np.int64))
    return sorted(int(k) for k in rng.choice(pool, size=min(limit, len(pool)), replace=False))

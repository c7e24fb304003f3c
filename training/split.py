"""Which rows of which row groups one DataLoader worker of one rank reads in an epoch.

The epoch's row groups are put in one order (shuffled with ``seed + epoch``, the same on
every rank), laid end to end as one sequence of rows, and cut into contiguous pieces: first
one piece per rank, then the rank's piece into one piece per worker. Every row lands in
exactly one piece; pieces differ by at most one row (rank) and one row (worker), or are all
exactly equal with ``drop_last``, which drops the last ``rows mod world_size`` rows of the
epoch's order. Because the cut is by rows, a row group at a boundary is read by two workers,
each keeping its part: one extra row-group read per worker and epoch, for exact balance.

Everything here is pure NumPy and deterministic, so every rank computes every other rank's
piece without talking to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def epoch_order(num_groups: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """Row-group visiting order of one epoch, identical on every rank.

    Returns
    -------
    order : (num_groups,) int64   a permutation of ``range(num_groups)``
    """
    if not shuffle:
        return np.arange(num_groups, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(num_groups).astype(np.int64)


def piece_bounds(total: int, index: int, count: int, *, equal: bool) -> tuple[int, int]:
    """Rows ``[start, stop)`` of piece ``index`` when ``total`` rows are cut into ``count``.

    With ``equal`` every piece has ``total // count`` rows and the remainder is dropped;
    otherwise piece sizes differ by at most one and nothing is dropped.
    """
    if not 0 <= index < count:
        raise ValueError(f"piece {index} out of range for {count} pieces")
    if equal:
        size = total // count
        return index * size, (index + 1) * size
    return index * total // count, (index + 1) * total // count


def rank_rows(total: int, *, rank: int, world_size: int, drop_last: bool) -> int:
    """How many rows ``rank`` reads in an epoch (the same for every epoch)."""
    start, stop = piece_bounds(total, rank, world_size, equal=drop_last)
    return stop - start


def worker_ranges(group_rows: Sequence[int], order: np.ndarray, *, rank: int, world_size: int,
                  worker: int, num_workers: int, drop_last: bool) -> list[tuple[int, int, int]]:
    """The row ranges one worker of one rank reads, in reading order.

    Parameters
    ----------
    group_rows : (G,) int        rows of each row group
    order : (G,) int             the epoch's row-group order (:func:`epoch_order`)
    rank, world_size : int       this process among the data-parallel processes
    worker, num_workers : int    this DataLoader worker among the rank's workers
    drop_last : bool             equal pieces on every rank (and every worker)

    Returns
    -------
    ranges : list of (group, start, stop)   rows ``[start, stop)`` of row group ``group``
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker must be in [0, {num_workers}), got {worker}")
    sizes = np.asarray(group_rows, dtype=np.int64)[order]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    rank_start, rank_stop = piece_bounds(int(ends[-1]) if len(ends) else 0, rank, world_size,
                                         equal=drop_last)
    # Workers of every rank cut equal rank pieces the same way, so with drop_last all ranks
    # also yield the same number of batches (each worker batches its own rows).
    offset, limit = piece_bounds(rank_stop - rank_start, worker, num_workers, equal=False)
    start, stop = rank_start + offset, rank_start + limit
    ranges = []
    first = int(np.searchsorted(ends, start, side="right"))
    for position in range(first, len(order)):
        if starts[position] >= stop:
            break
        low = max(start, int(starts[position])) - int(starts[position])
        high = min(stop, int(ends[position])) - int(starts[position])
        if high > low:
            ranges.append((int(order[position]), low, high))
    return ranges

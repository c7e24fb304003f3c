"""PyTorch datasets over label shards: a streaming one for training, a map-style one.

    >>> from torch.utils.data import DataLoader
    >>> shards = ExpressionShards("out/", seed=0, drop_last=True)
    >>> loader = DataLoader(shards, batch_size=64, num_workers=4)
    >>> for epoch in range(10):
    ...     shards.set_epoch(epoch)
    ...     for images, expressions in loader:   # (B, 3, H, W) in [0, 1], (B, 29) sigma
    ...         ...

Work is split by rows of row groups across DDP ranks and DataLoader workers
(:mod:`training.split`): every row is read exactly once per epoch over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from schemas import ROW_SCHEMA, DatasetMetadata
from schemas.rows import EXPRESSION, IMAGE
from training.batch import BatchConverter, batched_rows
from training.decode import DECODERS, decode_image, image_to_tensor
from training.shards import ShardSet, read_columns
from training.split import epoch_order, piece_bounds, rank_rows, worker_ranges
from training.tracks import read_track_columns, rows_per_track

DEFAULT_COLUMNS = (IMAGE, EXPRESSION)
DEFAULT_SHUFFLE_BUFFER = 1024


def _check_columns(columns: Sequence[str] | None) -> tuple[str, ...]:
    if columns is None:
        return DEFAULT_COLUMNS
    columns = tuple(columns)
    unknown = [name for name in columns if name not in ROW_SCHEMA.names]
    if unknown or not columns:
        raise ValueError(f"columns must be a non-empty subset of {ROW_SCHEMA.names}, "
                         f"unknown: {unknown}")
    return columns


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit rank and world size, else torch.distributed's when initialised, else (0, 1)."""
    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither")
    if rank is None:
        distributed = torch.distributed
        if distributed.is_available() and distributed.is_initialized():
            return distributed.get_rank(), distributed.get_world_size()
        return 0, 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")
    return rank, world_size


def parquet_columns(columns: Sequence[str]) -> list[str]:
    """Parquet column paths to read for ``columns``: an image's stored path is never needed."""
    return [f"{IMAGE}.bytes" if name == IMAGE else name for name in columns]


def column_values(table: pa.Table, name: str) -> Sequence:
    """One column as per-row values: image bytes, float32 arrays, or Python scalars."""
    column = table.column(name)
    if name == IMAGE:
        # Copies into bytes objects: a zero-copy view would keep its whole row group (about
        # 2 MB) alive for as long as one of its rows waits in the shuffle buffer.
        return pc.struct_field(column, "bytes").to_pylist()
    if pa.types.is_fixed_size_list(column.type):
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        return flat.reshape(len(column), column.type.list_size)
    if pa.types.is_list(column.type):
        return [np.asarray(value, dtype=np.float32) for value in column.to_pylist()]
    return column.to_pylist()


def table_rows(table: pa.Table, columns: Sequence[str]) -> Iterator[tuple]:
    """A table as per-row tuples of :func:`column_values`, in ``columns`` order."""
    return zip(*(column_values(table, name) for name in columns))


def shuffle_buffered(rows: Iterator, *, buffer_size: int,
                     rng: np.random.Generator) -> Iterator:
    """Yield ``rows`` in a random order, holding at most ``buffer_size`` of them."""
    buffer = []
    for row in rows:
        if len(buffer) < buffer_size:
            buffer.append(row)
            continue
        index = int(rng.integers(len(buffer)))
        yield buffer[index]
        buffer[index] = row
    rng.shuffle(buffer)
    yield from buffer


def _other_value(value):
    """Float arrays and floats as float32 tensors; strings and None as they are."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, dtype=np.float32))
    if isinstance(value, float):
        return torch.tensor(value, dtype=torch.float32)
    return value


class _RowConverter:
    """Raw row tuple -> tensors: decode the image, apply the transform, pick the output form."""

    def __init__(self, columns, *, transform, decoder, return_dict):
        if decoder not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {decoder!r}")
        self.columns = columns
        self.is_image = tuple(name == IMAGE for name in columns)
        self.transform = transform
        self.decoder = decoder
        self.return_dict = return_dict

    def image(self, data: bytes) -> torch.Tensor:
        image = image_to_tensor(decode_image(data, decoder=self.decoder))
        return image if self.transform is None else self.transform(image)

    def __call__(self, row: tuple):
        converted = tuple(self.image(value) if is_image else _other_value(value)
                          for is_image, value in zip(self.is_image, row))
        if self.return_dict:
            return dict(zip(self.columns, converted))
        return converted


class _ShardDatasetBase:
    """Metadata access shared by the streaming and the map-style dataset."""

    shard_set: ShardSet

    @property
    def metadata(self) -> DatasetMetadata:
        """Metadata of the first shard (all shards share the model unless mixed)."""
        return self.shard_set.metadata

    @property
    def expression_std(self) -> tuple:
        """The label model's standard deviations: ``raw = sigma * expression_std``."""
        return self.shard_set.expression_std


class ExpressionShards(_ShardDatasetBase, IterableDataset):
    """Stream (image, 29-D expression) samples from label shards.

    Parameters
    ----------
    path_or_paths : str, PathLike or sequence
        shard files, folders of shards or globs; local, pyarrow URIs or fsspec URIs
    rank, world_size : int, optional
        this process among data-parallel ranks; default: torch.distributed's when
        initialised (construct the dataset after ``init_process_group``), else one process
    transform : callable, optional
        applied to each (3, H, W) float32 image in [0, 1], in the worker
    columns : sequence of str, optional
        columns to yield (default ``("image", "expression")``)
    shuffle : bool
        shuffle row-group order per epoch (``seed + epoch``, shared by all ranks) and rows
        through a per-worker buffer
    seed : int
    drop_last : bool
        every rank (and every worker) yields exactly ``rows // world_size`` samples per
        epoch, so DDP ranks never wait on each other at the end of an epoch; the dropped
        rows change from epoch to epoch when shuffled
    shuffle_buffer : int
        rows held by each worker's shuffle buffer (encoded, so about 20 kB each)
    allow_mixed_models : bool
        read shards labelled with different models (their sigma units differ)
    decode : {"cv2", "pil"}
    return_dict : bool, optional
        yield dicts keyed by column; default: dicts when ``columns`` is given, tuples not
    filesystem : pyarrow or fsspec filesystem, optional
    batch_size : int, optional
        yield ready batches of this many rows, for ``DataLoader(shards, batch_size=None)``
        (no collate): each worker decodes its rows into one preallocated uint8 array and
        converts the whole batch to float at once. A worker's last batch is short, or
        dropped with ``drop_last``. ``transform`` then receives the (B, 3, H, W) batch.
        All images of a batch must have one size (shards of one run share the crop size).
        Recommended for throughput.

    Yields
    ------
    (image, expression) : (3, H, W) float32 in [0, 1], (29,) float32 sigma units
        or a dict / tuple of the requested columns: images as above, float lists as
        float32 tensors, floats as 0-d tensors, strings as str (None when missing).
        With ``batch_size``: (B, 3, H, W) (``torch.channels_last`` memory format) and
        (B, 29); float columns stacked to (B, ...) tensors, strings and None as lists.

    Raises
    ------
    SchemaError   on an unknown schema version or (unless allowed) mixed label models
    ValueError    (batched, while iterating) when the images of one batch differ in size
    """

    def __init__(self, path_or_paths, *, rank: int | None = None, world_size: int | None = None,
                 transform: Callable | None = None, columns: Sequence[str] | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                 allow_mixed_models: bool = False, decode: str = "cv2",
                 return_dict: bool | None = None, filesystem=None,
                 batch_size: int | None = None):
        super().__init__()
        self.columns = _check_columns(columns)
        return_dict = (columns is not None) if return_dict is None else return_dict
        self.converter = _RowConverter(self.columns, transform=transform, decoder=decode,
                                       return_dict=return_dict)
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ValueError(f"batch_size must be None or >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.batch_converter = None if batch_size is None else BatchConverter(
            self.columns, transform=transform, decoder=decode, return_dict=return_dict)
        if rank is None and world_size is None:
            # Resolved now, in the main process: spawned DataLoader workers cannot see the
            # process group. Constructed before init_process_group, it is resolved later.
            distributed = torch.distributed
            if distributed.is_available() and distributed.is_initialized():
                rank, world_size = _resolve_rank(None, None)
        _resolve_rank(rank, world_size)
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.shuffle_buffer = shuffle_buffer
        self.epoch = 0
        self.shard_set = ShardSet(path_or_paths, filesystem=filesystem,
                                  allow_mixed_models=allow_mixed_models)
        self.row_groups = self.shard_set.row_groups()

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``; call before creating each epoch's iterator.

        DataLoader workers receive a copy of the dataset when an epoch's iterator starts,
        so with ``persistent_workers=True`` a later ``set_epoch`` does not reach them.
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Samples this rank yields per epoch (over all its DataLoader workers)."""
        rank, world_size = _resolve_rank(self.rank, self.world_size)
        return rank_rows(self.shard_set.num_rows, rank=rank, world_size=world_size,
                         drop_last=self.drop_last)

    def num_batches(self, num_workers: int = 0) -> int:
        """Batches this rank yields per epoch with ``batch_size`` over ``num_workers`` workers.

        ``len`` stays the sample count; each worker batches its own rows, so the batch count
        depends on the DataLoader's workers (0 means the main process, one piece).
        """
        if self.batch_size is None:
            raise ValueError("num_batches needs batch_size")
        pieces = max(num_workers, 1)
        rows = len(self)
        total = 0
        for worker in range(pieces):
            start, stop = piece_bounds(rows, worker, pieces, equal=False)
            full, rest = divmod(stop - start, self.batch_size)
            total += full + (1 if rest and not self.drop_last else 0)
        return total

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def _read(self, ranges) -> Iterator[tuple]:
        """Row tuples of ``(group, start, stop)`` ranges, one open shard at a time."""
        open_index, parquet = None, None
        try:
            for group, start, stop in ranges:
                shard_index, group_index, _ = self.row_groups[group]
                if shard_index != open_index:
                    if parquet is not None:
                        parquet.close(force=True)
                    open_index, parquet = shard_index, self.shard_set.open(shard_index)
                table = read_columns(parquet, parquet_columns(self.columns),
                                     row_group=group_index)
                yield from table_rows(table.slice(start, stop - start), self.columns)
        finally:
            if parquet is not None:
                parquet.close(force=True)

    def __iter__(self):
        rank, world_size = _resolve_rank(self.rank, self.world_size)
        worker, num_workers = self._worker()
        order = epoch_order(len(self.row_groups), shuffle=self.shuffle, seed=self.seed,
                            epoch=self.epoch)
        ranges = worker_ranges([rows for _, _, rows in self.row_groups], order, rank=rank,
                               world_size=world_size, worker=worker,
                               num_workers=num_workers, drop_last=self.drop_last)
        rows = self._read(ranges)
        if self.shuffle and self.shuffle_buffer > 1:
            rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
            rows = shuffle_buffered(rows, buffer_size=self.shuffle_buffer, rng=rng)
        if self.batch_converter is not None:
            for batch in batched_rows(rows, self.batch_size, drop_last=self.drop_last):
                yield self.batch_converter(batch)
            return
        for row in rows:
            yield self.converter(row)


class ExpressionShardsMap(_ShardDatasetBase, Dataset):
    """Random access to the rows of a small set of shards, held in memory (images encoded).

    Same parameters and outputs as :class:`ExpressionShards`, minus the streaming ones;
    row ``index`` is the ``index``-th row of the shards in path order (of the rows kept).

    Parameters
    ----------
    max_rows_per_track : int, optional
        keep at most this many rows of each video face track, evenly spaced in time (see
        :func:`training.tracks.rows_per_track`); rows of still images are all kept
    """

    def __init__(self, path_or_paths, *, transform: Callable | None = None,
                 columns: Sequence[str] | None = None, allow_mixed_models: bool = False,
                 decode: str = "cv2", return_dict: bool | None = None, filesystem=None,
                 max_rows_per_track: int | None = None):
        self.columns = _check_columns(columns)
        self.converter = _RowConverter(
            self.columns, transform=transform, decoder=decode,
            return_dict=(columns is not None) if return_dict is None else return_dict)
        self.shard_set = ShardSet(path_or_paths, filesystem=filesystem,
                                  allow_mixed_models=allow_mixed_models)
        table = self.shard_set.read_table(parquet_columns(self.columns))
        self._values = [column_values(table, name) for name in self.columns]
        self._length = len(table)
        if max_rows_per_track is not None:
            keep = rows_per_track(*read_track_columns(self.shard_set),
                                  per_track=max_rows_per_track)
            self._values = [[values[row] for row in keep] for values in self._values]
            self._length = len(keep)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int):
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} rows")
        return self.converter(tuple(values[index] for values in self._values))

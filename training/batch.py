"""Rows -> ready batches, decoded without per-sample tensors (``ExpressionShards(batch_size=)``).

Per sample, a per-row loader makes a float tensor and the DataLoader's collate copies it into
the batch. Here each JPEG is decoded and copied into one reused (B, H, W, 3) uint8 array, and
the batch is converted to float32 at once, written straight into shared memory inside a
DataLoader worker (the collate's trick), so ``DataLoader(batch_size=None)`` passes it to the
main process without a further copy.

The float batch keeps the decoder's pixel-interleaved layout: a (B, 3, H, W) tensor in
``torch.channels_last`` memory format (same shape and values as a contiguous one). Converting
in that layout is an elementwise pass; reordering to channel planes at the same time costs
about twice as much (measured: 52 against 93 us per 224x224 image, one thread), and
convolutions accept either layout. ``.contiguous()`` gives the planar one where needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from schemas.rows import IMAGE
from training.decode import DECODERS, decode_image


def batched_rows(rows: Iterator, batch_size: int, *, drop_last: bool) -> Iterator[list]:
    """Consecutive lists of ``batch_size`` rows; the last short, or dropped with ``drop_last``."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch and not drop_last:
        yield batch


def _float_output(shape: tuple) -> torch.Tensor:
    """An uninitialised contiguous float32 tensor; in a DataLoader worker, in shared memory.

    A worker sends tensors to the main process through shared memory: one allocated there
    from the start is sent as it is, any other is first copied into a fresh shared segment.
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    numel = int(np.prod(shape))
    template = torch.empty(0, dtype=torch.float32)
    # What torch's default collate does for its output in a worker.
    storage = template._typed_storage()._new_shared(numel, device=template.device)
    return template.new(storage).view(shape)


def _stack_column(values: Sequence):
    """B per-row values -> float32 tensor (B, ...) for arrays and floats, else a list."""
    if all(isinstance(value, np.ndarray) for value in values):
        return torch.from_numpy(np.stack(values).astype(np.float32, copy=False))
    if all(isinstance(value, float) for value in values):
        return torch.tensor(values, dtype=torch.float32)
    return list(values)


class BatchConverter:
    """Lists of raw row tuples -> one batch: images (B, 3, H, W) float32 in [0, 1], columns stacked.

    Parameters
    ----------
    columns : sequence of str
        the row tuple's columns, in order
    transform : callable, optional
        applied to the whole (B, 3, H, W) image batch
    decoder : {"cv2", "pil"}
    return_dict : bool
        a dict keyed by column instead of a tuple
    """

    def __init__(self, columns: Sequence[str], *, transform: Callable | None, decoder: str,
                 return_dict: bool):
        if decoder not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {decoder!r}")
        self.columns = tuple(columns)
        self.transform = transform
        self.decoder = decoder
        self.return_dict = return_dict
        self._pixels = None  # the reused uint8 buffer, made in the process that decodes

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pixels"] = None  # workers make their own
        return state

    def _buffer(self, count: int, shape: tuple) -> np.ndarray:
        """A (count, H, W, 3) uint8 view of a buffer kept between batches of one size."""
        pixels = self._pixels
        if pixels is None or pixels.shape[1:] != shape or len(pixels) < count:
            pixels = self._pixels = np.empty((count, *shape), dtype=np.uint8)
        return pixels[:count]

    def images(self, encoded: Sequence[bytes]) -> torch.Tensor:
        """Decode B encoded images into one (B, 3, H, W) float32 batch in [0, 1].

        The batch is in ``torch.channels_last`` memory format (see the module docstring).

        Raises
        ------
        ValueError   when an image cannot be decoded or the images differ in size
        """
        first = decode_image(encoded[0], decoder=self.decoder)
        pixels = self._buffer(len(encoded), first.shape)
        pixels[0] = first
        for index in range(1, len(encoded)):
            image = decode_image(encoded[index], decoder=self.decoder)
            if image.shape != first.shape:
                raise ValueError(
                    f"images of one batch differ in size: (H, W, 3) {first.shape} and "
                    f"{image.shape}; batched reading needs one crop size (or batch_size=None "
                    "with a resizing transform)")
            pixels[index] = image
        interleaved = _float_output(pixels.shape)
        # copy_ then div_ rather than torch.div(uint8, out=float): 5x faster here, and the same
        # x / 255 in float32 as the per-sample path (a multiply by 1 / 255 is not bit-equal).
        interleaved.copy_(torch.from_numpy(pixels)).div_(255.0)
        batch = interleaved.permute(0, 3, 1, 2)  # (B, 3, H, W), channels_last strides
        return batch if self.transform is None else self.transform(batch)

    def __call__(self, rows: Sequence[tuple]):
        columns = list(zip(*rows))
        converted = tuple(self.images(values) if name == IMAGE else _stack_column(values)
                          for name, values in zip(self.columns, columns))
        if self.return_dict:
            return dict(zip(self.columns, converted))
        return converted

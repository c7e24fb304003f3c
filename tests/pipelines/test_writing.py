"""Parked crops and rows, and the shard count."""

import numpy as np
import pytest

from pipelines import writing
from schemas import rows as columns


def test_parked_row_and_crop_come_back_and_are_deleted(tmp_path):
    row = {columns.ID: "abc", columns.EXPRESSION: np.arange(29, dtype=np.float32),
           columns.LABEL: None}
    writing.write_crop(str(tmp_path), "abc", b"jpeg bytes")
    pending = writing.park_row(str(tmp_path), row, crop_bytes=10)
    assert (pending.id, pending.crop_bytes) == ("abc", 10)
    back = writing.read_row(str(tmp_path), "abc")
    assert back[columns.LABEL] is None
    np.testing.assert_array_equal(back[columns.EXPRESSION], row[columns.EXPRESSION])
    assert writing.read_crop(str(tmp_path), "abc") == b"jpeg bytes"
    writing.delete_crops(str(tmp_path), ["abc"])
    assert not any((tmp_path / writing.CROPS_DIR).iterdir())
    with pytest.raises(FileNotFoundError):
        writing.read_row(str(tmp_path), "abc")


def test_shard_count_grows_with_bytes():
    assert writing.shard_count(0) == 1 and writing.shard_count(600 * 2**20) == 3

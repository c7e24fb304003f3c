"""Reading shards with Hugging Face `datasets`, as docs/training.md describes."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas import rows as columns
from tests.training.conftest import write_latent_shards
from training.decode import decode_image

# An optional consumer: the package itself never imports it.
datasets = pytest.importorskip("datasets")


def test_load_dataset_reads_rows_and_decodes_images(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    paths = write_latent_shards(tmp_path / "shards", [5, 4], seed=21, image_size=24)
    loaded = datasets.load_dataset("parquet", data_files=[str(path) for path in paths],
                                   split="train", cache_dir=str(tmp_path / "cache"))
    # No cast: the shards' `huggingface` schema metadata makes `datasets` decode the image.
    assert len(loaded) == 9
    table = pq.read_table(paths[0])
    first = loaded[0]
    assert first[columns.ID] == table.column(columns.ID)[0].as_py()
    np.testing.assert_array_equal(np.asarray(first[columns.EXPRESSION], dtype=np.float32),
                                  np.asarray(table.column(columns.EXPRESSION)[0].as_py(),
                                             dtype=np.float32))
    image = first[columns.IMAGE]
    assert image.size == (24, 24) and image.mode == "RGB"
    stored = table.column(columns.IMAGE)[0].as_py()["bytes"]
    # PIL and OpenCV both wrap libjpeg; upsampling choices may differ by a few levels.
    difference = np.abs(np.asarray(image, dtype=int) - decode_image(stored).astype(int))
    assert difference.max() <= 4

"""`expnet generate --landmarker fan` end to end, with a small FAN in a temporary torch hub.

The network is face-alignment's FAN with one hourglass and seeded random weights: its points
mean nothing, but they travel the real path (hub lookup, load, crop, batch, decode, fit, rows).
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from fitting.image import decode_image
from fitting.landmarks.fan_backend import WEIGHTS_FILE, FanLandmarker
from pipelines.generate import GenerateOptions, landmarker_options
from schemas import DatasetMetadata, table_problems
from schemas import rows as columns
from tests.fitting.fan_networks import install_weights, random_fan
from tests.pipelines.conftest import EXAMPLES, run_generate

PHOTOS = ("astronaut.png", "obama2.jpg")


@pytest.fixture()
def two_photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def test_fan_rows_carry_the_landmarker_and_its_points(two_photos, tmp_path, monkeypatch):
    torch_home = tmp_path / "torch-home"
    install_weights(random_fan(seed=11), torch_home)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    output = tmp_path / "out"
    stats = run_generate([two_photos], output, "--landmarker", "fan")
    assert stats["invariant"]["holds"]
    assert stats["written"] == len(PHOTOS)
    tables = [pq.read_table(path) for path in sorted(output.glob("part-*.parquet"))]
    rows = [row for table in tables for row in table.to_pylist()]
    assert {row[columns.LANDMARKER] for row in rows} == {"fan"}
    for table in tables:
        assert table_problems(table) == []
        metadata = DatasetMetadata.from_arrow(table.schema.metadata)
        assert metadata.landmarker == "fan"
        assert WEIGHTS_FILE in metadata.landmarker_version
    # The rows hold what the library gives on the same photo (float32 at the schema boundary).
    fan = FanLandmarker(device="cpu").load()
    for name in PHOTOS:
        [row] = [row for row in rows if row[columns.SOURCE_URI].endswith(name)]
        [face] = fan.detect(decode_image((EXAMPLES / name).read_bytes())).faces
        assert np.allclose(np.reshape(row[columns.SOURCE_LANDMARKS], (68, 2)), face.landmarks,
                           atol=1e-3)
        assert np.allclose(row[columns.FACE_BOX], face.box)


def test_missing_weights_stop_the_run_before_processing(two_photos, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-home"))
    output = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        run_generate([two_photos], output, "--landmarker", "fan")
    missing = tmp_path / "nowhere" / "my-fan.pth"
    with pytest.raises(FileNotFoundError, match="my-fan.pth"):
        run_generate([two_photos], output, "--landmarker", "fan",
                     "--landmarker-weights", str(missing))
    assert not output.exists()


def test_landmarker_weights_flag_reaches_the_backend(tmp_path):
    weights = str(tmp_path / "fan.pth")
    options = GenerateOptions(["--landmarker", "fan", "--landmarker-weights", weights])
    assert landmarker_options(options) == {"weights_path": weights}
    assert FanLandmarker(**landmarker_options(options)).weights_file() == tmp_path / "fan.pth"


def test_fan_console_command_exits_cleanly(two_photos, tmp_path):
    """``expnet generate --landmarker fan`` in fresh processes: torch and Arrow both loaded at
    interpreter exit, where a leftover thread once aborted the process (status 134)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torch_home = tmp_path / "torch-home"
    install_weights(random_fan(seed=11), torch_home)
    expnet = str(Path(sys.executable).parent / "expnet")
    for attempt in range(2):
        result = subprocess.run(
            [expnet, "generate", "--input", str(two_photos), "--output",
             str(tmp_path / f"out{attempt}"), "--landmarker", "fan"],
            env={**os.environ, "TORCH_HOME": str(torch_home)}, capture_output=True,
            text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{len(PHOTOS)} inputs -> {len(PHOTOS)} written" in result.stdout, result.stdout

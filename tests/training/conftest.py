"""Synthetic label shards for the training tests, written straight from the schema.

Images are small JPEGs whose three channel brightnesses encode a 3-D latent ``z``; the
29-D expression is ``z @ MIXING``, so a network can learn the label from the pixels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import EXPRESSION_DIM, DatasetMetadata, shard_schema
from schemas import rows as columns

MODEL_HASH = "1" * 64
MIXING = np.random.default_rng(1234).normal(size=(3, EXPRESSION_DIM)) / np.sqrt(3.0)


def synthetic_metadata(*, model_hash: str = MODEL_HASH, schema_version: int = 1,
                       model_id: str = "synthetic") -> DatasetMetadata:
    return DatasetMetadata(model_id=model_id, model_hash=model_hash,
                           expression_std=tuple([2.0] * EXPRESSION_DIM), landmarker="dlib",
                           landmarker_version="test", pipeline_version="test",
                           schema_version=schema_version)


def latent_image(latent: np.ndarray, size: int) -> np.ndarray:
    """(3,) latent -> (size, size, 3) uint8 RGB: channel c is 128 + 40 z_c plus a gradient."""
    ramp = np.linspace(-20.0, 20.0, size)[None, :, None]
    pixels = 128.0 + 40.0 * np.clip(latent, -2.5, 2.5)[None, None, :] + ramp
    return np.clip(np.broadcast_to(pixels, (size, size, 3)), 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def make_row(*, row_id: str, expression: np.ndarray, image: np.ndarray,
             label: str | None = None, subject: str | None = None,
             landmarks: np.ndarray | None = None) -> dict:
    """A schema-complete label row; pose and fit fields are plausible constants."""
    landmarks = np.zeros((68, 2)) if landmarks is None else landmarks
    jpeg = encode_jpeg(image)
    return {
        columns.ID: row_id, columns.SOURCE_URI: f"synthetic://{row_id}.jpg",
        columns.IMAGE: {"bytes": jpeg, "path": f"{row_id}.jpg"},
        columns.LABEL: label, columns.SUBJECT: subject,
        columns.EXPRESSION: np.asarray(expression, dtype=np.float32).tolist(),
        columns.IDENTITY: [0.0] * 10, columns.ROTATION: np.eye(3).ravel().tolist(),
        columns.YAW: 0.0, columns.PITCH: 0.0, columns.ROLL: 0.0, columns.SCALE: 1.0,
        columns.TRANSLATION: [0.0, 0.0],
        columns.LANDMARKS: np.asarray(landmarks, dtype=np.float32).ravel().tolist(),
        columns.SOURCE_LANDMARKS: np.asarray(landmarks, dtype=np.float32).ravel().tolist(),
        columns.FACE_BOX: [0.0, 0.0, 1.0, 1.0], columns.FIT_RESIDUAL: 0.5,
        columns.LANDMARKER: "dlib", columns.MODEL_ID: "synthetic",
    }


def latent_rows(count: int, *, seed: int, image_size: int = 32, prefix: str = "row") -> list:
    """``count`` rows whose expression is ``z @ MIXING`` and whose image encodes ``z``."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        latent = rng.normal(size=3)
        row_id = hashlib.sha256(f"{prefix}-{seed}-{index}".encode()).hexdigest()
        rows.append(make_row(row_id=row_id, expression=latent @ MIXING,
                             image=latent_image(latent, image_size)))
    return rows


def write_shard(path: Path, rows: list, *, metadata: DatasetMetadata | None = None,
                row_group_size: int = 100) -> Path:
    metadata = synthetic_metadata() if metadata is None else metadata
    table = pa.Table.from_pylist(sorted(rows, key=lambda row: row[columns.ID]),
                                 schema=shard_schema(metadata))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_latent_shards(folder: Path, counts: list, *, seed: int, image_size: int = 32,
                        row_group_size: int = 100) -> list:
    """One shard per entry of ``counts`` (rows in it), ``part-XXXXX-of-YYYYY.parquet``."""
    paths = []
    for index, count in enumerate(counts):
        rows = latent_rows(count, seed=seed + index, image_size=image_size, prefix=str(index))
        name = f"part-{index:05d}-of-{len(counts):05d}.parquet"
        paths.append(write_shard(folder / name, rows, row_group_size=row_group_size))
    return paths


@pytest.fixture(scope="session")
def many_groups(tmp_path_factory) -> Path:
    """Three shards of 37, 23 and 41 rows in row groups of 4: 27 uneven groups, 101 rows."""
    folder = tmp_path_factory.mktemp("many-groups")
    write_latent_shards(folder, [37, 23, 41], seed=7, image_size=16, row_group_size=4)
    return folder


@pytest.fixture(scope="session")
def latent_shards(tmp_path_factory) -> Path:
    """Two shards of 16 rows of 32x32 latent images (row groups of 8) for training."""
    folder = tmp_path_factory.mktemp("latent")
    write_latent_shards(folder, [16, 16], seed=100, image_size=32, row_group_size=8)
    return folder


@pytest.fixture(scope="session")
def generated_shards(tmp_path_factory) -> Path:
    """Real shards of the bundled photos from `expnet generate` (8 faces, about 10 s)."""
    from pipelines.generate import run

    output = tmp_path_factory.mktemp("generated")
    examples = Path(__file__).resolve().parents[2] / "examples" / "faces"
    run(["--input", str(examples), "--output", str(output), "--quiet"])
    return output

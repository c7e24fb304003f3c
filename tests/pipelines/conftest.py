"""Shared fixtures of the pipeline tests: small real-photo collections and a runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"
# Real photos with one face each (public domain, see examples/faces/PROVENANCE.md) and one
# without a face; small enough that dlib takes well under 100 ms on each.
FACE_PHOTOS = ("astronaut.png", "obama2.jpg", "obama_partial_face2.jpg")
NO_FACE_PHOTO = "coffee.png"


def run_generate(inputs, output, *extra) -> dict:
    """Run ``expnet generate`` in-process and return its stats."""
    argv = ["--input", *map(str, inputs), "--output", str(output), "--quiet", *extra]
    return generate.run(argv)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """ROOT/<label>/<photo>: three faces, a face-less photo, a duplicate and broken files."""
    root = tmp_path_factory.mktemp("collection") / "faces"
    for label, name in zip(("happy", "neutral", "sad"), FACE_PHOTOS):
        (root / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / name, root / label / name)
    (root / "objects").mkdir()
    shutil.copy(EXAMPLES / NO_FACE_PHOTO, root / "objects" / NO_FACE_PHOTO)
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], root / "objects" / "zz-copy.png")
    (root / "objects" / "empty.jpg").write_bytes(b"")
    (root / "objects" / "text.jpg").write_text("not an image\n")
    data = (EXAMPLES / FACE_PHOTOS[1]).read_bytes()
    (root / "objects" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture(scope="session")
def folder_run(photo_folder, tmp_path_factory):
    """One pipeline run over ``photo_folder`` with labels from parent folders."""
    output = tmp_path_factory.mktemp("folder-run")
    stats = run_generate([photo_folder], output, "--label-from-parent")
    return output, stats


@pytest.fixture
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1, with an empty bucket."""
    boto3 = pytest.importorskip("boto3", reason="the aws extra is not installed")
    moto_server = pytest.importorskip("moto.server", reason="moto is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket="faces")
    yield url, client
    server.stop()

"""Lose nothing, redo nothing: kill and rerun, incremental runs, bad input as data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fitting.image_corpus import build_corpus
from tests.pipelines.conftest import EXAMPLES, FACE_PHOTOS, run_generate

REPO = Path(__file__).resolve().parents[2]


def dataset_bytes(output: Path) -> dict:
    """Every file a reader may see (shards, failures, manifest), by relative name."""
    names = [*output.glob("part-*.parquet"), *output.glob("failures/*.parquet"),
             output / "manifest.json"]
    return {path.relative_to(output).as_posix(): path.read_bytes() for path in names}


def visible_files(output: Path) -> set:
    return {path.relative_to(output).as_posix() for path in output.rglob("*") if path.is_file()}


@pytest.mark.parametrize("kill_after_seconds", [1.5, 4.0])
def test_kill_minus_9_then_rerun_gives_the_uninterrupted_output(folder_run, photo_folder,
                                                                 tmp_path, kill_after_seconds):
    reference, _ = folder_run
    output = tmp_path / "out"
    command = [sys.executable, "-m", "commands.expnet", "generate", "--input", str(photo_folder),
               "--output", str(output), "--label-from-parent", "--quiet"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(kill_after_seconds)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Whatever the kill left: no shard without a manifest is a complete dataset...
    if not (output / "manifest.json").exists():
        assert not (output / "stats.json").exists()
    # ...and the same command, rerun, completes it byte for byte.
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    assert dataset_bytes(output) == dataset_bytes(reference)
    assert not any(name.startswith("_temporary") for name in visible_files(output))


def test_interrupted_run_leftovers_are_cleared(folder_run, photo_folder, tmp_path):
    reference, _ = folder_run
    output = tmp_path / "out"
    shutil.copytree(reference, output)
    # An interrupted run: a half-written temporary, a stale shard name, no manifest.
    (output / "manifest.json").unlink()
    (output / "_temporary").mkdir()
    (output / "_temporary" / "part-00000-of-00001.parquet.abc").write_bytes(b"half")
    (output / "part-00007-of-00009.parquet").write_bytes(b"stale")
    run_generate([photo_folder], output, "--label-from-parent")
    assert dataset_bytes(output) == dataset_bytes(reference)
    assert "part-00007-of-00009.parquet" not in visible_files(output)


def test_incremental_run_adds_only_new_content(tmp_path):
    collection = tmp_path / "faces"
    collection.mkdir()
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], collection / FACE_PHOTOS[0])
    output = tmp_path / "out"
    first = run_generate([collection], output)
    assert (first["inputs"], first["written"]) == (1, 1)
    # The collection grows: one new photo, and a renamed copy of the old one.
    shutil.copy(EXAMPLES / FACE_PHOTOS[1], collection / FACE_PHOTOS[1])
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], collection / "renamed.png")
    second = run_generate([collection], output, "--incremental")
    assert (second["inputs"], second["written"], second["existing"]) == (3, 1, 2)
    assert second["invariant"]["holds"]
    manifest = json.loads((output / "manifest.json").read_text())
    assert [run["rows"] for run in manifest["runs"]] == [1, 1]
    shard_names = sorted(shard["name"] for shard in manifest["shards"])
    assert shard_names == ["part-00000-of-00001.parquet", "part-r001-00000-of-00001.parquet"]
    ids = [row_id for name in shard_names
           for row_id in pq.read_table(output / name).column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == manifest["rows"] == 2
    # Nothing new: a third run writes an empty shard and counts every input as existing.
    third = run_generate([collection], output, "--incremental")
    assert (third["written"], third["existing"]) == (0, 3)


def test_incremental_run_refuses_another_model(tmp_path):
    from fitting.models import load_model, save_model
    from pipelines.output_state import DatasetStateError
    from synth.toy_model import make_synthetic_model

    collection = tmp_path / "faces"
    collection.mkdir()
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], collection / FACE_PHOTOS[0])
    run_generate([collection], tmp_path / "out")
    other = save_model(make_synthetic_model(), tmp_path / "other.npz")
    assert load_model(str(other)).content_hash != load_model("open").content_hash
    with pytest.raises(DatasetStateError, match="same model"):
        run_generate([collection], tmp_path / "out", "--incremental", "--model", str(other))


def _bad_input_collection(root: Path) -> dict:
    """The generated corpus of awkward files, plus odd names and an unsafe archive."""
    expected = {}
    for name, (data, expectation) in build_corpus().items():
        (root / name).write_bytes(data)
        expected[name] = expectation[1] if expectation[0] == "fail" else None
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], root / "name with spaces.png")
    expected["name with spaces.png"] = "written"
    odd = os.fsencode(root) + b"/caf\xe9-latin1.png"
    shutil.copy(EXAMPLES / FACE_PHOTOS[1], odd)
    os.symlink(root, root / "loop")
    with tarfile.open(root / "unsafe.tar", "w") as archive:
        archive.add(EXAMPLES / FACE_PHOTOS[2], arcname="../../escape.jpg")
    return expected


def test_bad_input_becomes_failure_rows_and_the_run_finishes(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    expected = _bad_input_collection(root)
    stats = run_generate([root], tmp_path / "out")
    assert stats["invariant"]["holds"]
    failures = pq.read_table(tmp_path / "out" / "failures" / "part-00000-of-00001.parquet")
    reasons = {row["source_uri"].rsplit("/", 1)[-1]: (row["stage"], row["reason"])
               for row in failures.to_pylist()}
    for name, reason in expected.items():
        if reason not in (None, "written"):
            assert reasons[name] == ("decode", reason), name
    # Decodable corpus images have no face: they fail at detection, with that reason.
    for name, reason in expected.items():
        if reason is None:
            assert reasons[name] == ("detect", "no_face"), name
    rows = [row for path in (tmp_path / "out").glob("part-*.parquet")
            for row in pq.read_table(path).to_pylist()]
    written = sorted(row["source_uri"].split("!")[-1] if "!" in row["source_uri"]
                     else row["source_uri"].rsplit("/", 1)[-1] for row in rows)
    assert written == sorted(["../../escape.jpg", "caf\\xe9-latin1.png",
                              "name with spaces.png"])
    # The archive's ../ member was read in memory: nothing was written outside.
    assert not (tmp_path / "escape.jpg").exists() and not (root.parent / "escape.jpg").exists()


def test_rerunning_the_command_of_a_complete_dataset_changes_nothing(folder_run, photo_folder):
    output, stats = folder_run
    before = dataset_bytes(output)
    again = run_generate([photo_folder], output, "--label-from-parent")
    assert again == json.loads((output / "stats.json").read_text())
    assert again["timings"] == stats["timings"]  # the earlier run's own record, not a new run
    assert dataset_bytes(output) == before


def test_manifest_with_missing_duplicate_and_malformed_rows(tmp_path):
    shutil.copy(EXAMPLES / FACE_PHOTOS[0], tmp_path / "face.png")
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"path": "face.png", "label": "joy", "subject": "s1"}),
        json.dumps({"path": "face.png", "label": "joy", "subject": "s1"}),  # duplicate row
        json.dumps({"path": "missing.png"}),                                # missing file
        json.dumps({"label": "no path"}),                                   # malformed
        "{broken json",                                                     # malformed
    ]) + "\n")
    stats = run_generate([manifest], tmp_path / "out")
    assert (stats["inputs"], stats["written"], stats["duplicates"], stats["failed"]) == (
        5, 1, 1, 3)
    assert stats["failures_by_reason"] == {"read/manifest_row_invalid": 2,
                                           "read/unreadable": 1}
    assert stats["invariant"]["holds"]


def test_truncated_model_file_is_refused_before_anything_runs(tmp_path):
    from fitting.models import OPEN_MODEL_PATH, ModelFileError

    truncated = tmp_path / "model.npz"
    truncated.write_bytes(OPEN_MODEL_PATH.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="not a readable model"):
        run_generate([EXAMPLES], tmp_path / "out", "--model", str(truncated))
    assert not (tmp_path / "out").exists()

"""`expnet generate` on videos: pans and zooms over the bundled photos, and broken files.

One folder holds two good videos (one face; two faces side by side), a still photo, a
duplicate video, a truncated one that still has frames, and one file of each bad kind.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from inspection.cli import summary_rows
from inspection.scan import scan_output
from pipelines import synth
from pipelines.archive_members import MemberError, open_member
from pipelines.errors import OptionsError
from pipelines.sources import SourceItem, read_item
from schemas import ROW_SCHEMA, table_problems
from schemas import rows as columns
from tests.pipelines.conftest import EXAMPLES, run_generate
from tests.pipelines.test_reliability import dataset_bytes
from tests.pipelines.test_scale import run_on_local_dask
from tests.pipelines.videos import (
    audio_only,
    pan_zoom,
    side_by_side,
    unknown_codec_avi,
    write_video,
)

FPS = 5                 # sampled; the files are 10 fps, so every other frame is kept
CLIP_FRAMES = 20        # 2 s at 10 fps: 10 sampled frames
MAX_PIXELS = 1_200_000  # above the still photo (910 x 1137), below the large video
FLAGS = ("--faces", "all", "--video-fps", str(FPS), "--video-chunk-seconds", "0.6",
         "--max-pixels", str(MAX_PIXELS), "--max-video-seconds", "30")
BAD_REASONS = {"empty.mp4": "empty_file", "garbage.mov": "not_a_video",
               "cut-index.mp4": "not_a_video", "sound.mp4": "no_video_stream",
               "unknown.avi": "unsupported_codec", "large.mp4": "too_many_pixels",
               "long.mkv": "too_long"}


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos") / "clips"
    (root / "bad").mkdir(parents=True)
    astronaut = pan_zoom("astronaut.png", CLIP_FRAMES)
    write_video(root / "astronaut.mp4", astronaut, fps=10, gop=4)
    obama = pan_zoom("obama2.jpg", CLIP_FRAMES, pan=(0.0, 0.15))
    write_video(root / "pair.mkv", side_by_side(astronaut, obama), fps=10, gop=4)
    shutil.copy(root / "astronaut.mp4", root / "bad" / "zz-copy.mp4")
    shutil.copy(EXAMPLES / "obama.jpg", root / "still.jpg")
    # 4 s of frames, cut at three quarters: the first frames survive, the rest is lost.
    long_clip = write_video(root / "bad" / "full.mkv", pan_zoom("obama2.jpg", 40), fps=10)
    data = long_clip.read_bytes()
    (root / "bad" / "cut.mkv").write_bytes(data[: len(data) * 3 // 4])
    long_clip.unlink()
    (root / "bad" / "empty.mp4").write_bytes(b"")
    (root / "bad" / "garbage.mov").write_bytes(b"not a video at all\n" * 50)
    clip = (root / "astronaut.mp4").read_bytes()
    (root / "bad" / "cut-index.mp4").write_bytes(clip[: len(clip) // 2])
    audio_only(root / "bad" / "sound.mp4")
    avi = write_video(root / "bad" / "mpeg4.avi", astronaut[:3], fps=10, codec="mpeg4")
    (root / "bad" / "unknown.avi").write_bytes(unknown_codec_avi(avi.read_bytes()))
    avi.unlink()
    write_video(root / "bad" / "large.mp4", [np.zeros((1024, 1280, 3), np.uint8)] * 2)
    write_video(root / "bad" / "long.mkv", astronaut[:2], times_ms=[0, 40_000])
    return root


@pytest.fixture(scope="module")
def video_run(video_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("video-run")
    return output, run_generate([video_folder], output, *FLAGS)


def read_rows(output) -> list:
    tables = [pq.read_table(path) for path in sorted(output.glob("part-*.parquet"))]
    for table in tables:
        assert table_problems(table) == []
        assert table.schema.remove_metadata().equals(ROW_SCHEMA)
    return [row for table in tables for row in table.to_pylist()]


def read_failures(output) -> list:
    return pq.read_table(output / "failures" / "part-00000-of-00001.parquet").to_pylist()


def file_id(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows_of(rows: list, name: str) -> list:
    return [row for row in rows if row[columns.SOURCE_URI].endswith("/" + name)]


def test_every_video_is_accounted_for(video_run):
    output, stats = video_run
    assert stats["invariant"]["holds"]
    # astronaut, pair, still, cut (rows and a failure) written; seven bad files; one copy.
    assert (stats["inputs"], stats["written"], stats["failed"], stats["duplicates"]) == (
        12, 4, 7, 1)
    reasons = {row[columns.SOURCE_URI].rsplit("/", 1)[-1]: row[columns.REASON]
               for row in read_failures(output) if row[columns.STAGE] == "decode"}
    assert reasons == {**BAD_REASONS, "cut.mkv": "truncated"}
    assert not (output / "_temporary").exists()


def test_rows_per_sampled_frame_with_their_timestamps(video_run, video_folder):
    output, _ = video_run
    rows = rows_of(read_rows(output), "astronaut.mp4")
    video_id = file_id(video_folder / "astronaut.mp4")
    assert [row[columns.ID] for row in rows] == [f"{video_id}-t{k:06d}-f0" for k in range(10)]
    assert [row[columns.FRAME_INDEX] for row in rows] == list(range(10))
    # Every other frame of a 10 fps file, timed by its own timestamp.
    np.testing.assert_allclose([row[columns.TIME_S] for row in rows],
                               np.arange(10) / FPS, atol=1e-6)
    assert all(row[columns.SOURCE_URI] == str(video_folder / "astronaut.mp4") for row in rows)


def test_one_track_per_face_and_identity_pooled_per_track(video_run, video_folder):
    output, _ = video_run
    rows = read_rows(output)
    single = rows_of(rows, "astronaut.mp4")
    assert {row[columns.TRACK_ID] for row in single} == {
        f"{file_id(video_folder / 'astronaut.mp4')}-k0"}
    pair = rows_of(rows, "pair.mkv")
    assert len(pair) == 20
    tracks = {}
    for row in pair:
        tracks.setdefault(row[columns.TRACK_ID], []).append(row)
    assert len(tracks) == 2
    sides = []
    for track in tracks.values():
        assert [row[columns.FRAME_INDEX] for row in track] == list(range(10))
        identities = np.array([row[columns.IDENTITY] for row in track])
        np.testing.assert_array_equal(identities, np.repeat(identities[:1], 10, axis=0))
        # A track stays on its side of the frame: the astronaut left, Obama right.
        sides.append({row[columns.FACE_BOX][0] > 224 for row in track})
    assert sorted(map(sorted, sides)) == [[False], [True]]
    first, second = (np.array(track[0][columns.IDENTITY]) for track in tracks.values())
    assert np.abs(first - second).max() > 0.1


def test_a_still_image_keeps_null_video_columns(video_run):
    output, _ = video_run
    [still] = rows_of(read_rows(output), "still.jpg")
    assert (still[columns.FRAME_INDEX], still[columns.TIME_S], still[columns.TRACK_ID]) == (
        None, None, None)
    assert "-t" not in still[columns.ID]


def test_a_truncated_video_keeps_its_frames_and_says_where_it_stops(video_run):
    output, _ = video_run
    rows = rows_of(read_rows(output), "cut.mkv")
    assert 0 < len(rows) < 20
    assert [row[columns.FRAME_INDEX] for row in rows] == list(range(len(rows)))
    # One failure for the chunk where frames stop, and one for each later (empty) chunk:
    # 4 s in chunks of three 0.2 s slots start at slots 0, 3, ..., 18.
    failures = [row for row in read_failures(output)
                if row[columns.SOURCE_URI].endswith("/cut.mkv")]
    assert {row[columns.REASON] for row in failures} == {"truncated"}
    first_slots = sorted(int(row[columns.ID].rsplit("-t", 1)[1]) for row in failures)
    assert first_slots == list(range(first_slots[0], 20, 3))
    assert first_slots[0] <= len(rows) <= first_slots[0] + 3
    assert all(row[columns.MESSAGE].startswith(("frames stop at", "no frames from"))
               for row in failures)


def test_chunk_length_does_not_change_the_rows(video_run, video_folder, tmp_path):
    reference, _ = video_run
    flags = list(FLAGS)
    flags[flags.index("--video-chunk-seconds") + 1] = "60"
    run_generate([video_folder], tmp_path, *flags)
    assert read_rows(tmp_path) == read_rows(reference)


def test_two_workers_write_the_same_bytes(video_run, video_folder, tmp_path):
    reference, reference_stats = video_run
    stats = run_generate([video_folder], tmp_path, *FLAGS, "--workers", "2")
    assert stats["failures_by_reason"] == reference_stats["failures_by_reason"]
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def test_dask_partitions_write_the_same_bytes(video_run, video_folder, tmp_path):
    reference, _ = video_run
    stats = run_on_local_dask([video_folder], tmp_path, *FLAGS, "--dask_partition_size", "2")
    assert stats["invariant"]["holds"]
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def test_a_manifest_subject_pools_across_videos_and_stills(video_folder, tmp_path):
    manifest = tmp_path / "faces.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in (
        {"path": str(video_folder / "astronaut.mp4"), "subject": "S1"},
        {"path": str(EXAMPLES / "astronaut.png"), "subject": "S1"})))
    stats = run_generate([manifest], tmp_path / "out", "--max-frames-per-video", "3")
    assert stats["invariant"]["holds"] and stats["rows"] == 4
    rows = read_rows(tmp_path / "out")
    assert {row[columns.SUBJECT] for row in rows} == {"S1"}
    assert [row[columns.FRAME_INDEX] for row in rows_of(rows, "astronaut.mp4")] == [0, 1, 2]
    identities = np.array([row[columns.IDENTITY] for row in rows])
    np.testing.assert_array_equal(identities, np.repeat(identities[:1], 4, axis=0))


def test_videos_on_s3_through_dask_workers_give_the_rows_of_local_files(video_run, video_folder,
                                                                        s3_server):
    """PyAV reads the videos through the file objects of Beam's S3 filesystem, on Dask
    workers that configure it from the run's flags; the output is on S3 too."""
    reference, _ = video_run
    url, client = s3_server
    for name in ("astronaut.mp4", "pair.mkv"):
        client.upload_file(str(video_folder / name), "faces", f"clips/{name}")
    credentials = ["--s3_endpoint_url", url, "--s3_access_key_id", "test",
                   "--s3_secret_access_key", "test", "--s3_region_name", "us-east-1"]
    stats = run_on_local_dask(["s3://faces/clips/"], "s3://faces/out", *FLAGS, *credentials)
    assert (stats["inputs"], stats["written"], stats["failed"]) == (2, 2, 0)
    remote = [pq.read_table(io.BytesIO(client.get_object(Bucket="faces", Key=item["Key"])
                                       ["Body"].read())).to_pylist()
              for item in client.list_objects_v2(Bucket="faces", Prefix="out/part-")["Contents"]]
    remote_rows = sorted((row for table in remote for row in table), key=lambda r: r["id"])
    local_rows = [row for row in read_rows(reference)
                  if row[columns.SOURCE_URI].endswith(("/astronaut.mp4", "/pair.mkv"))]
    keep = (columns.ID, columns.FRAME_INDEX, columns.TIME_S, columns.TRACK_ID,
            columns.EXPRESSION)
    assert [{key: row[key] for key in keep} for row in remote_rows] == [
        {key: row[key] for key in keep} for row in local_rows]
    assert remote_rows[0][columns.SOURCE_URI].startswith("s3://faces/clips/")


def test_inspect_summarises_the_tracks(video_run):
    output, _ = video_run
    scan = scan_output(str(output))
    assert scan.problems == ()
    lines = dict(summary_rows(scan))
    # astronaut (1 track), pair (2), cut (1): rows of stills are not counted.
    video_rows = sum(1 for track in scan.track_id if track is not None)
    assert lines["video rows"] == f"{video_rows} from 3 videos, 4 face tracks"
    assert video_rows == scan.rows - 1


def test_synth_sequences_are_videos_with_exact_per_frame_labels(tmp_path):
    flags = ["--geometry", "model", "--count", "1", "--frames", "12", "--fps", "10",
             "--size", "160", "--max-yaw", "15", "--seed", "2", "--quiet"]
    synth.run([*flags, "--output", str(tmp_path / "a")])
    synth.run([*flags, "--output", str(tmp_path / "b")])
    video = tmp_path / "a" / "videos" / "000000.mp4"
    assert video.read_bytes() == (tmp_path / "b" / "videos" / "000000.mp4").read_bytes()
    [row] = [json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").open()]
    assert [frame["frame"] for frame in row["frames"]] == list(range(12))
    assert [frame["time_s"] for frame in row["frames"]] == pytest.approx(np.arange(12) / 10)
    stats = run_generate([tmp_path / "a" / "manifest.jsonl"], tmp_path / "labels",
                         "--video-fps", "10")
    rows = read_rows(tmp_path / "labels")
    assert stats["invariant"]["holds"] and len(rows) >= 10
    # At the synth frame rate every frame is sampled: frame_index is the synth frame.
    truth = {frame["frame"]: frame for frame in row["frames"]}
    for found in rows:
        assert found[columns.TIME_S] == pytest.approx(truth[found[columns.FRAME_INDEX]]["time_s"])
    assert len({found[columns.TRACK_ID] for found in rows}) == 1
    fitted_yaw = np.array([found[columns.YAW] for found in rows])
    true_yaw = np.array([truth[found[columns.FRAME_INDEX]]["yaw"] for found in rows])
    # The yaw of a frontal-ish render is recovered within a few degrees (label fidelity study:
    # median 2-3 degrees through dlib); the bound leaves room for a bad frame.
    assert np.median(np.abs(fitted_yaw - true_yaw)) < 6.0


def test_a_video_is_hashed_as_a_stream_and_refused_above_the_byte_limit(video_folder):
    path = video_folder / "astronaut.mp4"
    item = SourceItem(uri=str(path), source=str(video_folder))
    [record] = list(read_item(item, max_file_bytes=10 * path.stat().st_size))
    assert record.data is None and record.location == str(path)
    assert record.content_id == file_id(path)
    [failure] = list(read_item(item, max_file_bytes=path.stat().st_size - 1))
    assert (failure.stage, failure.reason) == ("read", "file_too_large")


def test_video_flags_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(OptionsError) as raised:
        run_generate([tmp_path], tmp_path / "out", "--video-fps", "0",
                     "--max-frames-per-video", "-1", "--video-chunk-seconds", "0")
    message = str(raised.value)
    for flag in ("--video-fps", "--max-frames-per-video", "--video-chunk-seconds"):
        assert flag in message


# Inside archives: two good videos, a truncated one with frames, one cut before its index
# (not a video at all) and a still; loose in ``video_folder``, under ``clips/`` in the archive.
ARCHIVED = ("astronaut.mp4", "pair.mkv", "still.jpg", "bad/cut.mkv", "bad/cut-index.mp4")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".zip")


def write_archive(path, folder, names) -> None:
    """``folder/<name>`` for each name, stored as ``clips/<name>``; the container from the
    suffix (zip members deflated, as a zip tool does by default)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in names:
                archive.write(folder / name, f"clips/{name}")
        return
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as archive:
        for name in names:
            archive.add(folder / name, f"clips/{name}")


@pytest.fixture(scope="module")
def archive_runs(video_folder, tmp_path_factory):
    """suffix -> (archive, output, stats): one run over each kind of archive."""
    root = tmp_path_factory.mktemp("video-archives")
    runs = {}
    for suffix in ARCHIVE_SUFFIXES:
        archive = root / f"clips{suffix}"
        write_archive(archive, video_folder, ARCHIVED)
        output = root / f"out{suffix}"
        runs[suffix] = archive, output, run_generate([archive], output, *FLAGS)
    return runs


def loose_name(uri: str, archive) -> str:
    """The name under ``video_folder`` of an archive member's URI ``<archive>!clips/<name>``."""
    prefix = f"{archive}!clips/"
    assert uri.startswith(prefix), uri
    return uri[len(prefix):]


def without_uri(rows: list, drop=(columns.SOURCE_URI,)) -> list:
    return [{key: value for key, value in row.items() if key not in drop} for row in rows]


@pytest.mark.parametrize("suffix", ARCHIVE_SUFFIXES)
def test_videos_in_an_archive_give_the_rows_of_loose_files(archive_runs, video_run,
                                                           video_folder, suffix):
    archive, output, stats = archive_runs[suffix]
    assert stats["invariant"]["holds"]
    assert (stats["inputs"], stats["written"], stats["failed"], stats["duplicates"]) == (
        5, 4, 1, 0)
    rows = read_rows(output)
    # Ids, labels, times and tracks come from the content: only the naming differs.
    loose = [row for row in read_rows(video_run[0])
             if row[columns.SOURCE_URI] in {str(video_folder / name) for name in ARCHIVED}]
    assert without_uri(rows) == without_uri(loose)
    assert [str(video_folder / loose_name(row[columns.SOURCE_URI], archive))
            for row in rows] == [row[columns.SOURCE_URI] for row in loose]
    assert {row[columns.TRACK_ID] for row in rows_of(rows, "pair.mkv")} == {
        row[columns.TRACK_ID] for row in rows_of(loose, "pair.mkv")}
    assert len({row[columns.TRACK_ID] for row in rows_of(rows, "pair.mkv")}) == 2


@pytest.mark.parametrize("suffix", ARCHIVE_SUFFIXES)
def test_a_broken_video_member_is_a_failure_row_and_loses_nothing_else(archive_runs,
                                                                       video_run, suffix):
    archive, output, _ = archive_runs[suffix]
    failures = read_failures(output)
    by_name = {}
    for row in failures:
        by_name.setdefault(loose_name(row[columns.SOURCE_URI], archive), set()).add(
            (row[columns.STAGE], row[columns.REASON]))
    assert by_name == {"bad/cut-index.mp4": {("decode", "not_a_video")},
                       "bad/cut.mkv": {("decode", "truncated")}}
    # The truncated member fails where the loose file does, chunk by chunk.
    loose = [row for row in read_failures(video_run[0])
             if row[columns.SOURCE_URI].endswith(("/cut.mkv", "/cut-index.mp4"))]
    # FFmpeg's messages name the file it was given, so only the truncation's are alike.
    drop = (columns.SOURCE_URI, columns.SOURCE, columns.MESSAGE)
    assert without_uri(failures, drop) == without_uri(loose, drop)
    assert [row[columns.MESSAGE] for row in failures if row[columns.REASON] == "truncated"] == [
        row[columns.MESSAGE] for row in loose if row[columns.REASON] == "truncated"]


def test_an_archive_of_videos_rerun_writes_the_same_bytes(archive_runs, tmp_path):
    archive, reference, _ = archive_runs[".tar.gz"]
    run_generate([archive], tmp_path, *FLAGS)
    assert dataset_bytes(tmp_path) == dataset_bytes(reference)


def test_a_video_member_is_hashed_as_a_stream_and_refused_above_the_byte_limit(
        archive_runs, video_folder):
    size = (video_folder / "pair.mkv").stat().st_size
    for suffix in ARCHIVE_SUFFIXES:
        archive, _, _ = archive_runs[suffix]
        item = SourceItem(uri=str(archive), source=str(archive), kind="archive")
        records = {record.uri: record
                   for record in read_item(item, max_file_bytes=10 * size)}
        pair = records[f"{archive}!clips/pair.mkv"]
        assert (pair.data, pair.location, pair.member) == (None, str(archive), "clips/pair.mkv")
        assert pair.content_id == file_id(video_folder / "pair.mkv")
        still = records[f"{archive}!clips/still.jpg"]
        assert still.data == (video_folder / "still.jpg").read_bytes() and still.member is None
        smaller = {getattr(record, "source_uri", None) or record.uri: record
                   for record in read_item(item, max_file_bytes=size - 1)}
        failure = smaller[f"{archive}!clips/pair.mkv"]
        assert (failure.stage, failure.reason) == ("read", "file_too_large")


def test_a_member_opened_again_is_the_member_or_a_reason(archive_runs, video_folder):
    data = (video_folder / "astronaut.mp4").read_bytes()
    for suffix in ARCHIVE_SUFFIXES:
        archive, _, _ = archive_runs[suffix]
        with open_member(str(archive), "clips/astronaut.mp4", max_bytes=len(data)) as member:
            member.seek(len(data) // 2)
            tail = member.read()
            member.seek(0)
            assert member.read() == data and tail == data[len(data) // 2:]
        with pytest.raises(MemberError, match="no file member"):
            with open_member(str(archive), "clips/missing.mp4", max_bytes=len(data)):
                pass
        with pytest.raises(MemberError, match="larger than"):
            with open_member(str(archive), "clips/astronaut.mp4", max_bytes=len(data) - 1):
                pass


def test_a_tar_cut_inside_a_video_member_keeps_the_members_before_it(archive_runs, tmp_path):
    archive, _, _ = archive_runs[".tar"]
    with tarfile.open(archive) as handle:
        pair = handle.getmember("clips/pair.mkv")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: pair.offset_data + pair.size // 2])
    item = SourceItem(uri=str(cut), source=str(cut), kind="archive")
    first, failure = read_item(item, max_file_bytes=1 << 26)
    assert first.uri == f"{cut}!clips/astronaut.mp4" and first.member == "clips/astronaut.mp4"
    assert (failure.source_uri, failure.stage, failure.reason) == (
        str(cut), "read", "archive_corrupt")

"""Expanding input specs and reading files, archives and manifests."""

import dataclasses
import io
import json
import tarfile
import zipfile

import pytest

from pipelines.sources import (
    Failure,
    Naming,
    SourceItem,
    SourceRecord,
    content_id,
    expand_input,
    has_videos,
    read_item,
)

MAX_BYTES = 1 << 20


def _read_all(items):
    out = []
    for item in items:
        if isinstance(item, Failure):
            out.append(item)
        else:
            out.extend(read_item(item, max_file_bytes=MAX_BYTES))
    return out


@pytest.fixture
def collection(tmp_path):
    """ROOT/happy/a.jpg, ROOT/sad/b.png, ROOT/sad/notes.txt (not an image by name)."""
    root = tmp_path / "faces"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    (root / "happy" / "a.jpg").write_bytes(b"jpeg-bytes-a")
    (root / "sad" / "b.png").write_bytes(b"png-bytes-b")
    (root / "sad" / "notes.txt").write_text("not an image")
    return root


def test_folder_is_read_recursively_with_labels_from_parent(collection):
    items = list(expand_input(str(collection), Naming(label_from_parent=True)))
    assert [(item.uri.rsplit("/", 2)[-2:], item.label) for item in items] == [
        (["happy", "a.jpg"], "happy"), (["sad", "b.png"], "sad")]
    records = _read_all(items)
    assert [record.data for record in records] == [b"jpeg-bytes-a", b"png-bytes-b"]
    assert all(record.source == str(collection) for record in records)


def test_subjects_come_from_the_parent_folder_or_a_file_name_pattern(tmp_path):
    root = tmp_path / "people"
    for path in ("ann/S010_001.jpg", "bob/S022_003.png", "bob/nopattern.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(path.encode())
    by_parent = list(expand_input(str(root), Naming(subject_from_parent=True)))
    assert [item.subject for item in by_parent] == ["ann", "bob", "bob"]
    by_pattern = list(expand_input(str(root), Naming(subject_pattern=r"(S\d{3})_")))
    assert [item.subject for item in by_pattern] == ["S010", "S022", None]
    whole_match = Naming(subject_pattern=r"S\d{3}")
    assert whole_match.subject("x/S005_001_00000011.png") == "S005"
    # Archive members are named the same way, from their path inside the archive.
    archive = tmp_path / "people.tar"
    with tarfile.open(archive, "w") as handle:
        handle.add(root, arcname="people")
    [item] = list(expand_input(str(archive), Naming(subject_from_parent=True,
                                                    label_from_parent=True)))
    records = _read_all([item])
    assert sorted((record.uri.rsplit("/", 1)[-1], record.subject, record.label)
                  for record in records) == [("S010_001.jpg", "ann", "ann"),
                                             ("S022_003.png", "bob", "bob"),
                                             ("nopattern.png", "bob", "bob")]
    with pytest.raises(ValueError, match="not both"):
        Naming(subject_from_parent=True, subject_pattern="x")


def test_glob_matches_files(collection):
    items = list(expand_input(str(collection / "*" / "*.png")))
    assert [item.uri.rsplit("/", 1)[-1] for item in items] == ["b.png"]


def test_pattern_without_match_is_a_read_failure(tmp_path):
    [failure] = list(expand_input(str(tmp_path / "missing" / "*.jpg")))
    assert isinstance(failure, Failure)
    assert (failure.stage, failure.reason) == ("read", "no_match")


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz")])
def test_tar_members_are_streamed(tmp_path, suffix, mode):
    archive = tmp_path / f"faces{suffix}"
    with tarfile.open(archive, mode) as handle:
        for name, data in (("x/one.jpg", b"1111"), ("../evil.jpg", b"2222"),
                           ("readme.txt", b"text")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    [item] = list(expand_input(str(archive)))
    assert item.kind == "archive"
    records = _read_all([item])
    assert sorted((record.uri.split("!")[1], record.data) for record in records) == [
        ("../evil.jpg", b"2222"), ("x/one.jpg", b"1111")]
    # Nothing was extracted next to (or above) the archive.
    assert sorted(path.name for path in tmp_path.iterdir()) == [archive.name]


def test_zip_members_and_oversized_member(tmp_path):
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("b.jpg", b"small")
        handle.writestr("a.png", b"x" * 64)
    items = list(expand_input(str(archive)))
    records = list(read_item(items[0], max_file_bytes=10))
    assert [type(record) for record in records] == [Failure, SourceRecord]
    assert records[0].reason == "file_too_large" and records[0].source_uri.endswith("!a.png")
    assert records[1].data == b"small"


def test_corrupt_archive_is_one_failure(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage")
    records = _read_all(expand_input(str(archive)))
    assert [(record.stage, record.reason) for record in records] == [("read", "archive_corrupt")]


def test_csv_manifest_resolves_relative_paths_and_reports_bad_rows(collection):
    manifest = collection / "list.csv"
    manifest.write_text("path,label,subject\nhappy/a.jpg,joy,s1\n,anger,s2\n"
                        "sad/missing.jpg,sad,s3\n")
    results = _read_all(expand_input(str(manifest)))
    good = [r for r in results if isinstance(r, SourceRecord)]
    bad = sorted((r.reason, r.source_uri.rsplit("/", 1)[-1]) for r in results
                 if isinstance(r, Failure))
    assert [(r.data, r.label, r.subject) for r in good] == [(b"jpeg-bytes-a", "joy", "s1")]
    assert bad == [("manifest_row_invalid", "list.csv#3"), ("unreadable", "missing.jpg")]


def test_jsonl_manifest_with_malformed_line(collection):
    manifest = collection / "list.jsonl"
    manifest.write_text(json.dumps({"uri": str(collection / "sad" / "b.png"), "label": "x"})
                        + "\n{not json\n")
    results = _read_all(expand_input(str(manifest)))
    assert isinstance(results[0], SourceRecord) and results[0].label == "x"
    assert isinstance(results[1], Failure) and results[1].reason == "manifest_row_invalid"


def test_csv_manifest_without_path_column_is_refused(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("file,label\na.jpg,x\n")
    [failure] = list(expand_input(str(manifest)))
    assert failure.reason == "manifest_row_invalid" and "path" in failure.message


def _reasons(results):
    return [(r.reason, r.source_uri.rsplit("/", 1)[-1]) if isinstance(r, Failure)
            else ("record", r.subject) for r in results]


def test_given_subjects_may_not_begin_with_auto(collection):
    # "auto:" marks pseudo-subjects made by --subject-from-faces; a given one would pass for
    # one in the dataset, so each input naming it is a read failure saying why.
    manifest = collection / "list.csv"
    manifest.write_text("path,subject\nhappy/a.jpg,auto:0123456789abcdef\n"
                        "sad/b.png,automatic\nsad/b.png, auto:x\n")
    results = _read_all(expand_input(str(manifest)))
    assert _reasons(results) == [("subject_reserved", "list.csv#2"), ("record", "automatic"),
                                 ("record", " auto:x")]
    assert results[0].stage == "read" and "'auto:0123456789abcdef'" in results[0].message
    folder = collection / "auto:7"
    folder.mkdir()
    (folder / "c.jpg").write_bytes(b"jpeg-bytes-c")
    by_parent = list(expand_input(str(collection), Naming(subject_from_parent=True)))
    assert _reasons(by_parent) == [("subject_reserved", "c.jpg"), ("record", "happy"),
                                   ("record", "sad")]
    archive = collection / "people.tar"
    with tarfile.open(archive, "w") as handle:
        handle.add(folder, arcname="auto:7")
        handle.add(collection / "happy", arcname="happy")
    [item] = list(expand_input(str(archive), Naming(subject_from_parent=True)))
    members = _read_all([item])
    assert sorted(_reasons(members)) == [("record", "happy"), ("subject_reserved", "c.jpg")]
    assert [r.source_uri.endswith("people.tar!auto:7/c.jpg") for r in members
            if isinstance(r, Failure)] == [True]


def test_symlink_loop_is_not_followed(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "face.jpg").write_bytes(b"abc")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    results = _read_all(expand_input(str(root)))
    assert sorted((type(r).__name__, r.source_uri.rsplit("/", 1)[-1] if isinstance(r, Failure)
                   else r.uri.rsplit("/", 1)[-1]) for r in results) == [
        ("Failure", "dangling.jpg"), ("SourceRecord", "face.jpg")]


def test_content_id_is_sha256_of_bytes():
    record = SourceRecord("u", "s", b"abc")
    assert record.content_id == content_id(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_oversized_file_is_refused_before_reading_it_all(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"x" * 100)
    [failure] = list(read_item(SourceItem(str(path), "s"), max_file_bytes=10))
    assert failure.reason == "file_too_large"


def test_inputs_may_hold_videos_when_they_name_a_video_or_an_archive():
    still = SourceItem(uri="faces/a.jpg", source="faces")
    video = SourceItem(uri="faces/a.MP4", source="faces")
    # The launcher does not list members: an archive may hold videos.
    archive = SourceItem(uri="faces.zip", source="faces.zip", kind="archive")
    failure = Failure("uri-x", "clips/b.mp4", "clips", "read", "no_match")
    assert not has_videos([still, failure])
    assert has_videos([still, video]) and has_videos([still, archive])


def test_dask_tokens_of_items_tell_every_field_apart():
    # Dask names Create's graph by this token: two item lists with one token would be run as
    # one. Every field, the naming's included, must change it; equal items must not.
    tokenize = pytest.importorskip("dask.tokenize",
                                   reason="the dask extra is not installed").tokenize
    item = SourceItem("/data/a.jpg", "/data", "file", "happy", "S001",
                      Naming(subject_pattern=r"(S\d+)_"))
    assert tokenize(item) == tokenize(dataclasses.replace(item))
    changed = [dataclasses.replace(item, uri="/data/b.jpg"),
               dataclasses.replace(item, source="/other"),
               dataclasses.replace(item, kind="archive"),
               dataclasses.replace(item, label=None),
               dataclasses.replace(item, subject="S002"),
               *[dataclasses.replace(item, naming=dataclasses.replace(item.naming, **change))
                 for change in ({"label_from_parent": True}, {"subject_pattern": None},
                                {"subject_pattern": None, "subject_from_parent": True})]]
    tokens = {tokenize(other) for other in changed}
    assert len(tokens) == len(changed) and tokenize(item) not in tokens
    assert len(changed) - 5 == len(dataclasses.fields(Naming))

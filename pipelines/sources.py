"""Reading raw face collections: folders, globs, archives and manifests on any Beam filesystem.

An input spec expands into :class:`SourceItem` (one file or archive to read); reading an item
yields :class:`SourceRecord` (one image's bytes, or a video's content id) or a
:class:`Failure` at stage ``read``. Archive members are streamed, never extracted to disk.
Videos, plain files and archive members alike, are hashed as a stream and never held in
memory: their frames are decoded later, chunk by chunk, from the file or the member itself
(``pipelines.archive_members``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import zipfile
import zlib

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from fitting.image import IMAGE_EXTENSIONS
from schemas.rows import AUTO_SUBJECT_PREFIX

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
COMPRESSED_TAR_EXTENSIONS = (".tar.gz", ".tgz")
ARCHIVE_EXTENSIONS = (".tar", *COMPRESSED_TAR_EXTENSIONS, ".zip")
MANIFEST_EXTENSIONS = (".csv", ".jsonl")
MANIFEST_PATH_COLUMNS = ("path", "uri")
ARCHIVE_SEPARATOR = "!"
# What reading a broken tar or zip raises (besides OSError), deflate errors of zip members too.
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError)


@dataclasses.dataclass(frozen=True)
class Naming:
    """How images found in folders, globs and archives get a label and a subject from their
    path (manifests give them in columns instead).

    Attributes
    ----------
    label_from_parent : bool      label = the name of the image's parent folder
    subject_from_parent : bool    subject = the name of the image's parent folder
    subject_pattern : str or None
        A regular expression searched in the file name; the subject is its first group, else
        the whole match (``r"(S\\d{3})_"`` gives ``S005`` for CK+'s ``S005_001_00000011.png``).
        No match leaves the subject empty.
    """

    label_from_parent: bool = False
    subject_from_parent: bool = False
    subject_pattern: str | None = None

    def __post_init__(self):
        if self.subject_from_parent and self.subject_pattern:
            raise ValueError("give a subject pattern or take the subject from the parent "
                             "folder, not both")
        if self.subject_pattern is not None:
            re.compile(self.subject_pattern)  # raises re.error for a malformed pattern

    def label(self, path: str) -> str | None:
        """The label of the image at ``path`` (a URI or an archive member name)."""
        return _parent_name(path) if self.label_from_parent else None

    def subject(self, path: str) -> str | None:
        """The subject of the image at ``path`` (a URI or an archive member name)."""
        if self.subject_from_parent:
            return _parent_name(path)
        if self.subject_pattern is None:
            return None
        match = re.search(self.subject_pattern, posixpath.basename(path))
        if match is None:
            return None
        return (match.group(1) if match.groups() else match.group(0)) or None


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One file (image or archive) to read.

    Attributes
    ----------
    uri : str        file path or URI
    source : str     the input spec it came from, for per-source accounting
    kind : str       ``"file"`` or ``"archive"``
    label, subject : str or None   from a manifest, or from the path (:class:`Naming`)
    naming : Naming   how archive members get their label and subject from their names
    """

    uri: str
    source: str
    kind: str = "file"
    label: str | None = None
    subject: str | None = None
    naming: Naming = dataclasses.field(default_factory=Naming)

    def __dask_tokenize__(self) -> tuple:
        """What Dask hashes of this item when it names the graph of Beam's ``Create``: every
        field, as plain values.

        Dask's own walk through a dataclass costs 0.1 ms an item, 1.3 s of the launcher for
        12 000 inputs while the cluster waits; this costs a twenty-fourth of that (RESULTS.md,
        "The launcher, and where a Dask run waits").
        """
        return (type(self).__qualname__, self.uri, self.source, self.kind, self.label,
                self.subject, *vars(self.naming).values())


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """One input image: its content id, where it came from, and (maybe) its bytes.

    Attributes
    ----------
    uri : str          printable URI (provenance; archive members as ``archive!member``)
    source : str       the input spec it came from
    data : bytes or None   None once dropped for a shuffle (see :meth:`without_data`)
    content_id : str   sha256 of the bytes
    location : str or None   the path to open again for a plain file (None for archive
                       images, whose bytes are kept: re-reading a tar stream is costly); for
                       a video in an archive, the archive
    member : str or None     for a video in an archive, its member name in ``location``
    """

    uri: str
    source: str
    data: bytes | None
    label: str | None = None
    subject: str | None = None
    content_id: str = ""
    location: str | None = None
    member: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "uri", printable_uri(self.uri))
        object.__setattr__(self, "source", printable_uri(self.source))
        if not self.content_id:
            object.__setattr__(self, "content_id", content_id(self.data))

    def without_data(self) -> SourceRecord:
        """This record without its bytes when they can be read again from ``location``."""
        if self.location is None:
            return self
        return dataclasses.replace(self, data=None)

    def with_data(self, *, max_file_bytes: int):
        """This record with its bytes, read again if dropped; or a ``changed`` failure.

        Returns
        -------
        SourceRecord or Failure
        """
        if self.data is not None:
            return self
        item = SourceItem(self.location, self.source, label=self.label, subject=self.subject)
        [again] = list(read_item(item, max_file_bytes=max_file_bytes))
        if isinstance(again, Failure):
            return again
        if again.content_id != self.content_id:
            return Failure(self.content_id, self.uri, self.source, "read",
                           "changed_while_reading", "the file changed during the run")
        return dataclasses.replace(self, data=again.data)


@dataclasses.dataclass(frozen=True)
class Failure:
    """An input, or one face of it, that did not become a row: a failure row of the schema."""

    id: str
    source_uri: str
    source: str
    stage: str
    reason: str
    message: str = ""

    def __post_init__(self):
        for name in ("source_uri", "source", "message"):
            object.__setattr__(self, name, printable_uri(getattr(self, name)))


def reserved_subject(uri: str, source: str, subject: str | None) -> Failure | None:
    """A ``subject_reserved`` failure when a given subject begins with ``auto:``, else None.

    Subjects with that prefix are the pseudo-subjects ``--subject-from-faces`` makes; a given
    one would be indistinguishable from them in the dataset, and taken off its faces by the
    identity check, so the input is refused instead.
    """
    if subject is None or not subject.startswith(AUTO_SUBJECT_PREFIX):
        return None
    return Failure(uri_id(uri), uri, source, "read", "subject_reserved",
                   f"subject {subject!r} begins with {AUTO_SUBJECT_PREFIX!r}, which marks "
                   "subjects made by --subject-from-faces; rename it")


def content_id(data: bytes) -> str:
    """The content id of an input: sha256 of its bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def printable_uri(uri: str) -> str:
    """A URI as valid UTF-8 text: undecodable file-name bytes become ``\\xNN`` escapes.

    Local names that are not UTF-8 arrive as surrogate escapes, which neither Beam's coders
    nor Parquet strings accept; the original is kept for opening the file.
    """
    return uri.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def uri_id(uri: str) -> str:
    """Id of an input whose bytes could not be read: derived from its URI instead."""
    return "uri-" + hashlib.sha256(uri.encode("utf-8", "surrogateescape")).hexdigest()


def _lower_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1].lower()


def is_image_name(uri: str) -> bool:
    return _lower_name(uri).endswith(IMAGE_EXTENSIONS)


def is_video_name(uri: str) -> bool:
    return _lower_name(uri).endswith(VIDEO_EXTENSIONS)


def has_videos(items) -> bool:
    """Whether expanded inputs (``SourceItem``s and failures) may hold a video: they name a
    video file, or an archive (its members are not listed in the launcher: that would read a
    compressed tar whole before the run starts)."""
    return any(isinstance(item, SourceItem)
               and (item.kind == "archive" or is_video_name(item.uri))
               for item in items)


def is_archive_name(uri: str) -> bool:
    return _lower_name(uri).endswith(ARCHIVE_EXTENSIONS)


def is_manifest_name(uri: str) -> bool:
    return _lower_name(uri).endswith(MANIFEST_EXTENSIONS)


def _is_remote(spec: str) -> bool:
    return "://" in spec


def _open(uri: str):
    return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def _parent_name(uri: str) -> str | None:
    parent = posixpath.basename(posixpath.dirname(uri.rstrip("/")))
    return parent or None


def expand_input(spec: str, naming: Naming | None = None):
    """Expand one ``--input`` spec into items to read, and failures.

    Parameters
    ----------
    spec : str
        A folder (recursive; image and archive files by extension), a glob or file path, an
        archive, or a ``.csv`` / ``.jsonl`` manifest; local or any Beam filesystem URI.
    naming : Naming, optional
        Labels and subjects from the images' paths (not for manifests, whose columns give
        them); default none.

    Yields
    ------
    SourceItem or Failure
    """
    naming = naming or Naming()
    if is_manifest_name(spec) and not any(ch in spec for ch in "*?["):
        yield from read_manifest(spec)
        return
    if not _is_remote(spec) and os.path.isdir(spec):
        uris = list(_walk_local(spec))
    else:
        pattern = spec.rstrip("/") + "/**" if spec.endswith("/") else spec
        uris = _match(pattern)
        if uris is None:
            yield Failure(uri_id(spec), spec, spec, "read", "no_match",
                          "the input pattern matched no file")
            return
        if spec.endswith("/"):
            uris = [uri for uri in uris if _is_collected_name(uri)]
    if not uris:
        yield Failure(uri_id(spec), spec, spec, "read", "no_match",
                      "the input matched no image, video or archive file")
        return
    for uri in sorted(uris):
        if is_archive_name(uri):
            yield SourceItem(uri=uri, source=spec, kind="archive", naming=naming)
            continue
        subject = naming.subject(uri)
        yield reserved_subject(uri, spec, subject) or SourceItem(
            uri=uri, source=spec, label=naming.label(uri), subject=subject)


def _match(pattern: str) -> list[str] | None:
    results = FileSystems.match([pattern])[0].metadata_list
    if not results:
        return None
    return [metadata.path for metadata in results]


def _is_collected_name(uri: str) -> bool:
    """Whether a folder's file is an input: an image, a video or an archive."""
    return is_image_name(uri) or is_video_name(uri) or is_archive_name(uri)


def _walk_local(root: str):
    """Image, video and archive files under a local folder; symbolic links are not followed
    into."""
    for folder, subfolders, files in os.walk(root, followlinks=False):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            if _is_collected_name(path):
                yield path


def read_manifest(manifest_uri: str):
    """Rows of a ``.csv`` (header row) or ``.jsonl`` manifest as items.

    Each row has a ``path`` or ``uri`` (relative paths are resolved against the manifest's
    folder) and optional ``label`` and ``subject``. Malformed rows, and rows whose subject
    begins with ``auto:`` (:func:`reserved_subject`), become failures.

    Yields
    ------
    SourceItem or Failure
    """
    try:
        with _open(manifest_uri) as handle:
            text = handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        yield Failure(uri_id(manifest_uri), manifest_uri, manifest_uri, "read",
                      "manifest_unreadable", str(error))
        return
    base = posixpath.dirname(manifest_uri) if _is_remote(manifest_uri) else \
        os.path.dirname(os.path.abspath(manifest_uri))
    rows = _manifest_rows(text, jsonl=manifest_uri.lower().endswith(".jsonl"))
    for line_number, row in rows:
        row_uri = f"{manifest_uri}#{line_number}"
        if not isinstance(row, dict):
            yield Failure(uri_id(row_uri), row_uri, manifest_uri, "read", "manifest_row_invalid",
                          f"line {line_number}: {row}")
            continue
        path = next((row[key] for key in MANIFEST_PATH_COLUMNS if row.get(key)), None)
        if not isinstance(path, str) or not path.strip():
            yield Failure(uri_id(row_uri), row_uri, manifest_uri, "read", "manifest_row_invalid",
                          f"line {line_number}: no 'path' or 'uri' value")
            continue
        path = path.strip()
        if not _is_remote(path) and not os.path.isabs(path):
            path = FileSystems.join(base, path) if _is_remote(base) else os.path.join(base, path)
        subject = _optional_text(row.get("subject"))
        yield reserved_subject(row_uri, manifest_uri, subject) or SourceItem(
            uri=path, source=manifest_uri,
            kind="archive" if is_archive_name(path) else "file",
            label=_optional_text(row.get("label")), subject=subject)


def _optional_text(value) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _manifest_rows(text: str, *, jsonl: bool):
    """(line number, dict or error text) for each data row."""
    if jsonl:
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                yield line_number, f"invalid JSON ({error})"
        return
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not set(MANIFEST_PATH_COLUMNS) & set(reader.fieldnames):
        yield 1, f"the header has no 'path' or 'uri' column: {reader.fieldnames}"
        return
    for row in reader:
        if None in row:
            yield reader.line_num, "more fields than the header names"
            continue
        yield reader.line_num, row


def read_item(item: SourceItem, *, max_file_bytes: int):
    """Read one item: a file gives one record, an archive one record per image member.

    A video's record has no bytes: its content id is hashed from a stream, and its frames are
    decoded from ``location`` later.

    Yields
    ------
    SourceRecord or Failure
    """
    if item.kind == "archive":
        yield from _read_archive(item, max_file_bytes=max_file_bytes)
        return
    if is_video_name(item.uri):
        yield _read_video(item, max_file_bytes=max_file_bytes)
        return
    try:
        with _open(item.uri) as handle:
            data = handle.read(max_file_bytes + 1)
    except (OSError, ValueError) as error:
        # Beam raises BeamIOError (an OSError) for missing files; ELOOP for symlink loops.
        yield Failure(uri_id(item.uri), item.uri, item.source, "read", "unreadable", str(error))
        return
    if len(data) > max_file_bytes:
        yield Failure(uri_id(item.uri), item.uri, item.source, "read", "file_too_large",
                      f"larger than {max_file_bytes} bytes")
        return
    yield SourceRecord(item.uri, item.source, data, item.label, item.subject,
                       location=item.uri)


HASH_BLOCK_BYTES = 1 << 20


def _hash_stream(stream, *, max_bytes: int) -> str | None:
    """The sha256 (hex) of a binary stream read in blocks; None once it passes ``max_bytes``."""
    digest, size = hashlib.sha256(), 0
    while block := stream.read(HASH_BLOCK_BYTES):
        size += len(block)
        if size > max_bytes:
            return None
        digest.update(block)
    return digest.hexdigest()


def _too_large(uri: str, source: str, max_file_bytes: int) -> Failure:
    return Failure(uri_id(uri), uri, source, "read", "file_too_large",
                   f"larger than {max_file_bytes} bytes")


def _read_video(item: SourceItem, *, max_file_bytes: int):
    """A video's record (content id, no bytes) or a read failure."""
    try:
        with _open(item.uri) as handle:
            digest = _hash_stream(handle, max_bytes=max_file_bytes)
    except (OSError, ValueError) as error:
        return Failure(uri_id(item.uri), item.uri, item.source, "read", "unreadable",
                       str(error))
    if digest is None:
        return _too_large(item.uri, item.source, max_file_bytes)
    return SourceRecord(item.uri, item.source, None, item.label, item.subject,
                        content_id=digest, location=item.uri)


def open_location(uri: str):
    """A binary, seekable file object for a plain file on any Beam filesystem."""
    return _open(uri)


def _read_archive(item: SourceItem, *, max_file_bytes: int):
    try:
        handle = _open(item.uri)
    except (OSError, ValueError) as error:
        yield Failure(uri_id(item.uri), item.uri, item.source, "read", "unreadable", str(error))
        return
    with handle:
        lister = _zip_members if _lower_name(item.uri).endswith(".zip") else _tar_members
        try:
            for name, size, open_member in lister(handle):
                yield _read_member(item, name, size, open_member, max_file_bytes=max_file_bytes)
        except (*ARCHIVE_ERRORS, OSError) as error:
            # Members already yielded stay; the rest of a broken archive is one failure.
            yield Failure(uri_id(item.uri), item.uri, item.source, "read", "archive_corrupt",
                          str(error))


def _read_member(item: SourceItem, name: str, size: int, open_member, *, max_file_bytes: int):
    """The record of one archive member (an image's bytes, or a video's content id) or a
    ``file_too_large`` failure; archive errors propagate to :func:`_read_archive`."""
    member_uri = f"{item.uri}{ARCHIVE_SEPARATOR}{name}"
    if size > max_file_bytes:
        return _too_large(member_uri, item.source, max_file_bytes)
    label, subject = _member_naming(item, name)
    reserved = reserved_subject(member_uri, item.source, subject)
    if reserved is not None:
        return reserved
    with open_member() as stream:
        if is_video_name(name):
            digest = _hash_stream(stream, max_bytes=max_file_bytes)
            data = None
        else:
            data = stream.read(max_file_bytes + 1)
            digest = None if len(data) > max_file_bytes else content_id(data)
    if digest is None:
        return _too_large(member_uri, item.source, max_file_bytes)
    if data is None:
        return SourceRecord(member_uri, item.source, None, label, subject, content_id=digest,
                            location=item.uri, member=name)
    return SourceRecord(member_uri, item.source, data, label, subject, content_id=digest)


def _member_naming(item: SourceItem, name: str) -> tuple:
    """(label, subject) of an archive member: from its name where the naming says so, else
    the archive's own (a manifest row naming the archive)."""
    naming = item.naming
    label = naming.label(name) if naming.label_from_parent else item.label
    subject = (naming.subject(name) if naming.subject_from_parent or naming.subject_pattern
               else item.subject)
    return label, subject


def _is_member_input(name: str) -> bool:
    return is_image_name(name) or is_video_name(name)


def _tar_members(handle):
    """(name, size, open) of the image and video members of a tar stream, in order;
    ``open()`` gives the member's stream, readable until the next member is listed."""
    with tarfile.open(fileobj=handle, mode="r|*") as archive:
        for member in archive:
            if member.isfile() and _is_member_input(member.name):
                yield member.name, member.size, \
                    lambda member=member: contextlib.closing(archive.extractfile(member))


def _zip_members(handle):
    """(name, size, open) of the image and video members of a zip file, by name."""
    with zipfile.ZipFile(handle) as archive:
        for info in sorted(archive.infolist(), key=lambda entry: entry.filename):
            if not info.is_dir() and _is_member_input(info.filename):
                yield info.filename, info.file_size, lambda info=info: archive.open(info)

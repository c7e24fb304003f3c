"""One member of a tar or zip archive opened again as a seekable file: how a video inside an
archive is probed and decoded chunk by chunk, like a loose one.

Each open finds the member afresh (a task may run on any worker), and what a seek costs
depends on the archive:

- zip: ``ZipFile.open`` reads the central directory and gives a seekable member; a seek
  forward reads through, a seek back restarts at the member's start (a deflated member is
  decompressed again up to the target, a stored one, as video usually is, only read).
- tar: the member is found by walking the headers (one read per member before it) and read
  through a window on the archive file, so a seek costs nothing.
- compressed tar (``.tar.gz``, ``.tgz``): a gzip stream cannot seek back without
  decompressing from its start, so the archive is streamed up to the member and the member is
  read into memory, refused above ``max_bytes`` (``--max-file-bytes``): each open, the
  probe and every chunk, decompresses the archive up to the end of that member.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import zipfile

from pipelines.sources import ARCHIVE_ERRORS, COMPRESSED_TAR_EXTENSIONS, open_location


class MemberError(OSError):
    """A member that cannot be opened: missing, larger than the limit, or a broken archive."""


@contextlib.contextmanager
def open_member(archive_uri: str, name: str, *, max_bytes: int):
    """A readable, seekable binary file of the member ``name`` of an archive.

    Parameters
    ----------
    archive_uri : str   a ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip`` on any Beam filesystem
    name : str          the member's name in the archive (the first member of that name)
    max_bytes : int     refuse a member larger than this

    Yields
    ------
    binary file object

    Raises
    ------
    MemberError (an ``OSError``)   when the member is missing, too large or unreadable
    """
    with open_location(archive_uri) as handle:
        lower = archive_uri.lower()
        if lower.endswith(".zip"):
            opener = _zip_member
        elif lower.endswith(COMPRESSED_TAR_EXTENSIONS):
            opener = _compressed_tar_member
        else:
            opener = _tar_member
        with opener(handle, name, max_bytes=max_bytes) as member:
            yield member


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise MemberError(f"member {name!r} is larger than {max_bytes} bytes")


def _missing(name: str) -> MemberError:
    return MemberError(f"the archive has no file member {name!r}")


@contextlib.contextmanager
def _zip_member(handle, name: str, *, max_bytes: int):
    try:
        archive = zipfile.ZipFile(handle)
        info = archive.getinfo(name)
    except KeyError as error:
        raise _missing(name) from error
    except ARCHIVE_ERRORS as error:
        raise MemberError(f"unreadable zip archive: {error}") from error
    with archive:
        _check_size(name, info.file_size, max_bytes)
        with archive.open(info) as member:
            yield member


def _first_file_member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """The first regular member called ``name``, reading headers only as far as it."""
    try:
        for member in archive:
            if member.name == name and member.isfile():
                return member
    except ARCHIVE_ERRORS as error:
        raise MemberError(f"unreadable tar archive: {error}") from error
    raise _missing(name)


@contextlib.contextmanager
def _tar_member(handle, name: str, *, max_bytes: int):
    try:
        archive = tarfile.open(fileobj=handle, mode="r:*")
    except ARCHIVE_ERRORS as error:
        raise MemberError(f"unreadable tar archive: {error}") from error
    with archive:
        member = _first_file_member(archive, name)
        _check_size(name, member.size, max_bytes)
        yield archive.extractfile(member)


@contextlib.contextmanager
def _compressed_tar_member(handle, name: str, *, max_bytes: int):
    try:
        with tarfile.open(fileobj=handle, mode="r|*") as archive:
            member = _first_file_member(archive, name)
            _check_size(name, member.size, max_bytes)
            data = archive.extractfile(member).read()
    except ARCHIVE_ERRORS as error:
        raise MemberError(f"unreadable tar archive: {error}") from error
    yield io.BytesIO(data)

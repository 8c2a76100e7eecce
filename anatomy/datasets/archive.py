"""Unpacking downloaded archives (zip or tar) safely: only the members asked for, through atomic writes.

Refused before anything is written: members that point outside the data folder (absolute paths, `..`),
encrypted zip members, compression methods this Python cannot read, and archives that would expand past
MAX_TOTAL_BYTES or by more than MAX_RATIO (a zip bomb). While a member is written its bytes are counted
against its declared size, so a member that expands beyond what its header says is refused too. Every
refusal is a DataError naming the archive and the member.
"""

from __future__ import annotations

import fnmatch
import hashlib
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from anatomy.datasets.lock import CHUNK
from anatomy.datasets.paths import refuse_special
from anatomy.datasets.registry import DataError
from anatomy.io import atomic_write, file_sha256

MAX_TOTAL_BYTES = 16 << 30  # the unpacked size an archive may declare (LVIS train's JSON is about 1.1 GB)
MAX_RATIO = 200  # unpacked / packed size of one member (JSON and pickles compress about 5-15x)
RATIO_FLOOR = 1 << 20  # members smaller than this are not ratio-checked (tiny files have odd ratios)
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DAMAGED_HINT = "delete it and fetch again; if it persists, the server sends another file"
_FOREIGN_HINT = "this is not the official release; delete the archive and fetch from the official source"


def member_target(dest: Path, name: str) -> Path:
    """Where archive member `name` goes under dest; refuses absolute paths and anything escaping dest."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise DataError(f"archive member {name!r} points outside the data folder; not unpacked")
    path = dest.joinpath(*posix.parts)
    if not path.resolve().is_relative_to(dest.resolve()):
        raise DataError(f"archive member {name!r} points outside the data folder; not unpacked")
    return path


def _wanted(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def check_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    """Refuse an encrypted member, an unknown compression method or a bomb-like ratio (before reading it)."""
    if info.flag_bits & 0x1:
        raise DataError(f"{archive}: member {info.filename!r} is encrypted; not unpacked", _FOREIGN_HINT)
    if info.compress_type not in _ZIP_METHODS:
        raise DataError(
            f"{archive}: member {info.filename!r} uses compression method {info.compress_type}, which "
            "cannot be read; not unpacked",
            _FOREIGN_HINT,
        )
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise DataError(
            f"{archive}: member {info.filename!r} would expand {info.file_size / max(info.compress_size, 1):,.0f}"
            f"x (to {info.file_size:,} bytes; the limit is {MAX_RATIO}x): refused as a zip bomb",
            _FOREIGN_HINT,
        )


def _check_total(archive: Path, declared: int) -> None:
    if declared > MAX_TOTAL_BYTES:
        raise DataError(
            f"{archive}: members declare {declared:,} bytes unpacked (the limit is {MAX_TOTAL_BYTES:,}): "
            "refused as an archive bomb",
            _FOREIGN_HINT,
        )


def _copy_counted(archive: Path, name: str, src: IO[bytes], out: IO[bytes] | None, declared: int) -> str:
    """Copy src to out (or just read it) counting bytes against the declared size; the sha256 of the data."""
    digest = hashlib.sha256()
    count = 0
    while block := src.read(CHUNK):
        count += len(block)
        if count > declared:
            raise DataError(
                f"{archive}: member {name!r} expands beyond its declared {declared:,} bytes: refused as an "
                "archive bomb",
                _FOREIGN_HINT,
            )
        digest.update(block)
        if out is not None:
            out.write(block)
    if count != declared:
        raise DataError(
            f"{archive}: member {name!r} holds {count:,} bytes, its header says {declared:,}: damaged archive",
            _DAMAGED_HINT,
        )
    return digest.hexdigest()


def _members(archive: Path, patterns: tuple[str, ...] | None):
    """(open handle, [(name, declared size, opener)]) for the archive's regular members that match, after
    the checks that need no reading (encryption, method, ratio, total); the handle is closed on refusal."""
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        try:
            chosen = [
                i
                for i in zf.infolist()
                if not i.is_dir() and (patterns is None or _wanted(i.filename, patterns))
            ]
            for info in chosen:
                check_zip_member(archive, info)
            _check_total(archive, sum(i.file_size for i in chosen))
        except BaseException:
            zf.close()
            raise
        return zf, [(i.filename, i.file_size, lambda i=i: zf.open(i)) for i in chosen]
    if tarfile.is_tarfile(archive):
        tf = tarfile.open(archive)
        try:
            members = [
                m for m in tf.getmembers() if m.isfile() and (patterns is None or _wanted(m.name, patterns))
            ]
            declared, packed = sum(m.size for m in members), archive.stat().st_size
            _check_total(archive, declared)
            if declared > RATIO_FLOOR and declared > MAX_RATIO * max(packed, 1):
                raise DataError(
                    f"{archive}: members declare {declared:,} bytes from a {packed:,}-byte archive "
                    f"(over {MAX_RATIO}x): refused as an archive bomb",
                    _FOREIGN_HINT,
                )
        except BaseException:
            tf.close()
            raise
        return tf, [(m.name, m.size, lambda m=m: tf.extractfile(m)) for m in members]
    raise DataError(f"{archive}: neither a zip nor a tar archive", _DAMAGED_HINT)


def _guarded(archive: Path, work: Callable[[], dict[str, dict]]) -> dict[str, dict]:
    try:
        return work()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile) as err:
        raise DataError(f"{archive}: damaged archive ({err})", _DAMAGED_HINT) from None
    except (NotImplementedError, RuntimeError) as err:  # zipfile: unknown method, encryption
        raise DataError(f"{archive}: cannot unpack ({err})", _FOREIGN_HINT) from None
    except (OSError, ValueError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # a disk error: the caller's write handling names it
        raise DataError(f"{archive}: damaged archive ({err})", _DAMAGED_HINT) from None


def check_archive(archive: Path) -> None:
    """Read every member of the archive to its end (zip CRCs, gzip CRC, declared sizes); DataError if any
    member is damaged, encrypted, of an unknown method or bomb-like. Used where no recorded sha256 can
    vouch for a download (a resumed or close-delimited first download)."""
    refuse_special(archive)

    def work() -> dict[str, dict]:
        handle, members = _members(archive, None)
        with handle:
            for name, declared, opener in members:
                with opener() as src:
                    _copy_counted(archive, name, src, None, declared)
        return {}

    _guarded(archive, work)


def unpack(archive: Path, dest: Path, patterns: tuple[str, ...], root: Path) -> dict[str, dict]:
    """Extract the members matching patterns (zip or tar) into dest; returns {relpath: {sha256, size}}.

    Each member is written through an atomic write, so an interruption leaves no half file. A member that
    already exists with the same bytes is left alone; one with different bytes is an error (never
    overwritten)."""
    refuse_special(archive)
    files: dict[str, dict] = {}

    def work() -> dict[str, dict]:
        handle, members = _members(archive, patterns)
        with handle:
            for name, declared, opener in members:
                path = member_target(dest, name)
                refuse_special(path)
                with atomic_write(path, "wb") as out, opener() as src:
                    digest = _copy_counted(archive, name, src, out, declared)
                    if path.exists() and file_sha256(path) != digest:
                        raise DataError(
                            f"{path}: exists with other content; not overwritten",
                            "move it away if it is not the verified file, then fetch again",
                        )
                files[path.relative_to(root).as_posix()] = {"sha256": digest, "size": path.stat().st_size}
        return files

    _guarded(archive, work)
    if not files:
        raise DataError(
            f"{archive}: no member matches {', '.join(patterns)}",
            "the archive's layout differs from the official release; check the file",
        )
    return files

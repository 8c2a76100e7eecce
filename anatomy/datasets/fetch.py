"""Plain-HTTP downloads: resume, verify, record, unpack. Standard library only (urllib).

A download goes to TARGET.part beside its target and is resumed from there with a Range request (after a
dropped connection within the same run, or on the next run after Ctrl-C). Only a download whose size and
sha256 match the publisher's figures or the lock file's first-seen hash is moved into place; a mismatch
deletes the .part and keeps nothing. Archives are unpacked member by member through atomic writes, refusing
absolute paths and `..`; a verified file is never overwritten.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from anatomy.datasets.lock import CHUNK, Lock
from anatomy.datasets.registry import DataError, Source
from anatomy.io import atomic_write, file_sha256

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]  # (label, bytes done, total or None)
RETRIES = 5
TIMEOUT_S = 60
USER_AGENT = "prompt-anatomy (https://github.com/; anatomy data fetch)"


def mirrored(url: str, base_url: str | None) -> str:
    """URL under a mirror laid out as BASE/HOST/PATH (what `wget -x` writes); unchanged without a base."""
    if not base_url:
        return url
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{base_url.rstrip('/')}/{parts.netloc}{parts.path}{query}"


def redact(url: str) -> str:
    """The URL without its query (Roboflow puts the API key there)."""
    return url.split("?", 1)[0]


def download(url: str, target: Path, progress: Progress | None = None, label: str = "") -> tuple[str, int]:
    """Fetch url into target.part (resuming what is there) and return (sha256, size) of the whole file.

    The caller verifies and then moves the .part into place. Connection drops are retried with a Range
    request from where the file stopped; HTTP errors and a server that ignores Range are handled.
    """
    import urllib.error
    import urllib.request

    part = target.with_name(target.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                status = response.status
                if have and status == 200:  # the server ignored Range: start over
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                with open(part, "ab" if have else "wb") as handle:
                    done = have
                    while block := response.read1(CHUNK):
                        handle.write(block)
                        done += len(block)
                        if progress:
                            progress(label, done, total)
                if total is not None and done < total:
                    raise ConnectionError(f"connection closed at {done:,} of {total:,} bytes")
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # Range past the end: the .part is already whole
                break
            hint = "check the URL or --base-url mirror" if err.code == 404 else "try again later"
            raise DataError(f"{redact(url)}: HTTP {err.code} {err.reason}", hint) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            failures += 1
            reason = getattr(err, "reason", err)
            if failures > RETRIES:
                raise DataError(
                    f"{redact(url)}: download failed after {RETRIES} retries ({reason})",
                    f"rerun to resume from {part.name}; or fetch through a mirror with --base-url",
                ) from None
            log.info("%s: %s; resuming (try %d of %d)", redact(url), reason, failures, RETRIES)
            time.sleep(min(0.2 * failures, 2.0))
    return file_sha256(part), part.stat().st_size


def verify_and_place(source: Source, lock: Lock, target: Path, digest: str, size: int) -> None:
    """Check the .part against the publisher's and the lock's figures; move it into place or delete it."""
    part = target.with_name(target.name + ".part")
    expected = source.sha256 or lock.download_hash(source.name)
    problems = []
    if source.size is not None and size != source.size:
        problems.append(f"size {size:,} bytes, expected {source.size:,}")
    if expected and digest != expected:
        problems.append(f"sha256 {digest[:16]}..., expected {expected[:16]}...")
    if problems:
        part.unlink(missing_ok=True)
        where = "the publisher's figure" if source.sha256 else f"the hash first recorded in {lock.path.name}"
        raise DataError(
            f"{source.name}: download refused ({'; '.join(problems)}, {where}); nothing kept",
            "the file changed upstream or the mirror serves another file; if the change is genuine, remove "
            f"the {source.name!r} entry from {lock.path} and fetch again",
        )
    os.replace(part, target)


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


def unpack(archive: Path, dest: Path, patterns: tuple[str, ...], root: Path) -> dict[str, dict]:
    """Extract the members matching patterns (zip or tar) into dest; returns {relpath: {sha256, size}}.

    Each member is written through an atomic write, so an interruption leaves no half file. A member that
    already exists with the same bytes is left alone; one with different bytes is an error (never
    overwritten)."""
    import tarfile

    files: dict[str, dict] = {}

    def place(name: str, opener) -> None:
        path = member_target(dest, name)
        digest = hashlib.sha256()
        with atomic_write(path, "wb") as out, opener() as src:
            while block := src.read(CHUNK):
                digest.update(block)
                out.write(block)
            if path.exists() and file_sha256(path) != digest.hexdigest():
                raise DataError(
                    f"{path}: exists with other content; not overwritten",
                    "move it away if it is not the verified file, then fetch again",
                )
        files[path.relative_to(root).as_posix()] = {"sha256": digest.hexdigest(), "size": path.stat().st_size}

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and _wanted(info.filename, patterns):
                        place(info.filename, lambda info=info: zf.open(info))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf:
                    if member.isfile() and _wanted(member.name, patterns):
                        place(member.name, lambda member=member: tf.extractfile(member))
        else:
            raise DataError(f"{archive}: neither a zip nor a tar archive", "delete it and fetch again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise DataError(f"{archive}: damaged archive ({err})", "delete it and fetch again") from None
    if not files:
        raise DataError(
            f"{archive}: no member matches {', '.join(patterns)}",
            "the archive's layout differs from the official release; check the file",
        )
    return files


def fetch_http(
    source: Source, root: Path, lock: Lock, base_url: str | None, progress: Progress | None
) -> str:
    """Download (resuming), verify, record and unpack one HTTP source. Returns a one-line status."""
    dest = root / source.dest
    target = dest / source.filename
    url = mirrored(source.url, base_url)
    if target.exists():
        digest, size = file_sha256(target), target.stat().st_size
        expected = source.sha256 or lock.download_hash(source.name)
        if expected and digest != expected:
            raise DataError(
                f"{target}: on disk but its sha256 differs from {lock.path.name}; not overwritten",
                "delete the file to fetch it again",
            )
    else:
        digest, size = download(url, target, progress, source.name)
        verify_and_place(source, lock, target, digest, size)
    record = {"url": source.url, "sha256": digest, "size": size}
    if not source.members:
        lock.record(
            source.name, record, {target.relative_to(root).as_posix(): {"sha256": digest, "size": size}}
        )
        return f"{source.name}: {target.relative_to(root)} ({size:,} bytes) verified"
    files = unpack(target, dest, source.members, root)
    lock.record(source.name, record, files)
    if not source.keep_archive:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    return f"{source.name}: {len(files)} file(s) unpacked into {dest.relative_to(root)}, verified"


def copy_verified(src: Path, path: Path) -> dict:
    """Copy src to path atomically (unless path already holds the same bytes); return {sha256, size}."""
    digest = file_sha256(src)
    if path.exists():
        if file_sha256(path) != digest:
            raise DataError(
                f"{path}: exists with other content; not overwritten", "move it away, then fetch again"
            )
    else:
        with atomic_write(path, "wb") as out, open(src, "rb") as handle:
            shutil.copyfileobj(handle, out, CHUNK)
    return {"sha256": digest, "size": path.stat().st_size}

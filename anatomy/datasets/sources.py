"""One plain-HTTP source end to end: download (fetch.py), verify from the first byte, record, unpack
(archive.py); and the verified copy the hub sources use.

A download is moved into place only when its size and sha256 match the publisher's figures or the lock
file's first-seen ones. With no recorded figures (a first fetch), a download that was resumed, or whose
body had no declared length (close-delimited, possibly cut short), is vouched for only by the archive's own
CRCs, read to the end; a plain file in that state is refused. A resumed download that fails its check is
fetched once more from the start (the server may have botched the range). A mismatch deletes the .part
and keeps nothing; a verified file is never overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from anatomy.datasets.archive import check_archive, unpack
from anatomy.datasets.fetch import Download, Limits, Progress, discard, download, finish, mirrored, part_paths
from anatomy.datasets.lock import CHUNK, Lock
from anatomy.datasets.paths import refuse_special
from anatomy.datasets.registry import DataError, Source
from anatomy.io import atomic_write, file_sha256

log = logging.getLogger(__name__)


def _problems(source: Source, lock: Lock, got: Download, part: Path) -> tuple[list[str], str]:
    """(what is wrong with the download, a note for the status line)."""
    expected = source.sha256 or lock.download_hash(source.name)
    size = source.size if source.size is not None else lock.download_size(source.name)
    problems = []
    if size is not None and got.size != size:
        problems.append(f"size {got.size:,} bytes, expected {size:,}")
    if expected and got.sha256 != expected:
        problems.append(f"sha256 {got.sha256[:16]}..., expected {expected[:16]}...")
    if problems or expected or (got.delimited and not got.resumed):
        return problems, ""
    # nothing recorded vouches for these bytes: a resumed or close-delimited first download
    how = "resumed" if got.delimited else "the server declared no length (no Content-Length)"
    if not source.members:
        return [f"{how} and no size or sha256 is recorded: cannot tell whether the file is whole"], ""
    try:
        check_archive(part)
    except DataError as error:
        return [f"{how}, and the archive does not read to its end ({error.message})"], ""
    return [], f" ({how}; no recorded sha256, so checked by reading the archive's CRCs to the end)"


def download_verified(
    source: Source, url: str, target: Path, lock: Lock, progress: Progress | None, limits: Limits
) -> tuple[Download, str]:
    """Download target and check it from its first byte; move it into place, or delete it and raise."""
    part, _ = part_paths(target)
    size = source.size if source.size is not None else lock.download_size(source.name)
    for attempt in (1, 2):
        got = download(url, target, progress, source.name, expected_size=size, limits=limits)
        problems, note = _problems(source, lock, got, part)
        if not problems:
            finish(target)
            return got, note
        if attempt == 1 and (got.resumed or not got.delimited):
            log.warning("%s: %s; fetching it again from the start", source.name, "; ".join(problems))
            discard(target)
            continue
        discard(target)
        recorded = source.sha256 or lock.download_hash(source.name)
        where = (
            "the publisher's figure"
            if source.sha256
            else f"the hash first recorded in {lock.path.name}"
            if recorded
            else "nothing recorded to check against"
        )
        raise DataError(
            f"{source.name}: download refused ({'; '.join(problems)}; {where}); nothing kept",
            "the file changed upstream or the mirror serves another file; if the change is genuine, remove "
            f"the {source.name!r} entry from {lock.path} and fetch again"
            if recorded
            else "fetch again, or through a mirror (--base-url) that sends Content-Length",
        )
    raise AssertionError("unreachable")


def fetch_http(
    source: Source,
    root: Path,
    lock: Lock,
    base_url: str | None,
    progress: Progress | None,
    limits: Limits = Limits(),
) -> str:
    """Download (resuming), verify, record and unpack one HTTP source. Returns a one-line status."""
    dest = root / source.dest
    target = dest / source.filename
    url = mirrored(source.url, base_url)
    refuse_special(dest, folder=True)
    refuse_special(target)
    note = ""
    if target.exists():
        digest, size = file_sha256(target), target.stat().st_size
        expected = source.sha256 or lock.download_hash(source.name)
        if expected and digest != expected:
            raise DataError(
                f"{target}: on disk but its sha256 differs from {lock.path.name}; not overwritten",
                "delete the file to fetch it again",
            )
    else:
        got, note = download_verified(source, url, target, lock, progress, limits)
        digest, size = got.sha256, got.size
    record = {"url": source.url, "sha256": digest, "size": size}
    if not source.members:
        lock.record(
            source.name, record, {target.relative_to(root).as_posix(): {"sha256": digest, "size": size}}
        )
        return f"{source.name}: {target.relative_to(root)} ({size:,} bytes) verified{note}"
    files = unpack(target, dest, source.members, root)
    lock.record(source.name, record, files)
    if not source.keep_archive:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    return f"{source.name}: {len(files)} file(s) unpacked into {dest.relative_to(root)}, verified{note}"


def copy_verified(src: Path, path: Path) -> dict:
    """Copy src to path atomically (unless path already holds the same bytes); return {sha256, size}."""
    refuse_special(src)
    refuse_special(path)
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

"""Checks a cached artefact must pass before it is reused: size and sha256 recorded when it was written, and
for .npy arrays a structural check (header readable, shape and dtype as expected, file exactly as long as
the header says). Each check returns the reason it failed, or None, so the caller can rebuild with a warning
or refuse."""

from __future__ import annotations

from pathlib import Path

from anatomy.io import file_sha256


def file_record(path: str | Path) -> dict:
    """What to record about a file when it is written: its size and sha256."""
    path = Path(path)
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


# Files this process has hashed and found equal to their record: (path, device, inode, size, mtime, sha256).
# A reader that opens the same cache several times (one per analysis) hashes it once; any change to the
# file (a write moves its mtime, a replacement its inode) makes it hashed again.
_verified: set[tuple] = set()


def check_file(path: str | Path, record: dict | None) -> str | None:
    """Why `path` does not match `record` (from file_record), or None. A record of None checks existence."""
    path = Path(path)
    if not path.is_file():
        return f"{path.name} is missing"
    if record is None:
        return None
    info = path.stat()
    if info.st_size != record.get("bytes"):
        return f"{path.name} has {info.st_size:,} bytes, {record.get('bytes')} were written"
    seen = (
        str(path.resolve()),
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        record.get("sha256"),
    )
    if seen in _verified:
        return None
    if file_sha256(path) != record.get("sha256"):
        return f"{path.name} does not match the sha256 recorded when it was written"
    _verified.add(seen)
    return None


def check_npy(path: str | Path, shape: tuple[int, ...] | None = None, dtype=None) -> str | None:
    """Why `path` is not a whole .npy array of `shape` and `dtype` (None: any), or None."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except (ValueError, OSError, SyntaxError) as err:
        return f"{path.name} has no readable .npy header ({err})"
    if found_dtype.hasobject:
        return f"{path.name} holds Python objects, not numbers"
    if shape is not None and tuple(found_shape) != tuple(shape):
        return f"{path.name} has shape {tuple(found_shape)}, expected {tuple(shape)}"
    if dtype is not None and found_dtype != np.dtype(dtype):
        return f"{path.name} holds {found_dtype}, expected {np.dtype(dtype)}"
    expected = offset + int(np.prod(found_shape, dtype=np.int64)) * found_dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        return f"{path.name} has {size:,} bytes, its header says {expected:,}"
    return None


def check_embeddings(
    out_dir: Path, manifest: dict, hashes: bool | tuple[str, ...], manifest_name: str = "embeddings.json"
) -> str | None:
    """Why the arrays a manifest describes cannot be trusted, or None (structure always; sizes and sha256
    when recorded, for every array when `hashes` is True, for the arrays it names when it is a tuple)."""
    try:
        n, dim, width = int(manifest["rows"]), int(manifest["dim"]), int(manifest["token_width"])
        per_token = bool(manifest["per_token"])
    except (KeyError, TypeError, ValueError) as err:
        return f"{manifest_name} is incomplete ({err})"
    shapes: dict[str, tuple[tuple[int, ...], str]] = {"pooled.npy": ((n, dim), "float32")}
    if per_token:
        shapes |= {"tokens.npy": ((n, width, dim), "float32"), "mask.npy": ((n, width), "bool")}
    records = manifest.get("files") or {}
    for name, (shape, dtype) in shapes.items():
        problem = check_npy(out_dir / name, shape, dtype)
        hashed = hashes is True or (isinstance(hashes, tuple) and name in hashes)
        if problem is None and hashed and name in records:
            problem = check_file(out_dir / name, records[name])
        if problem:
            return problem
    return None

"""Filesystem helpers: atomic writes, hashing, and results JSON with provenance.

Everything the toolkit writes goes through here, so an interrupted run never leaves a half-written file and
a rerun on the same inputs writes the same bytes (no timestamps, stable key order).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from anatomy.paths import check_path, open_regular  # noqa: F401  (the special-file check, re-exported)

log = logging.getLogger(__name__)

RESULTS_SCHEMA_VERSION = 1
# OSErrors that say the destination cannot take the write (rather than a bug): reported as one line.
_WRITE_ERRNOS = {
    errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG,
    errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOENT, errno.EIO,
}  # fmt: skip

# Packages whose versions are recorded in every results file (those that can change the numbers).
_PROVENANCE_PACKAGES = (
    "prompt-anatomy",
    "numpy",
    "scipy",
    "scikit-learn",
    "scikit-dimension",
    "torch",
    "open_clip_torch",
)


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's temporaries are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_error(path: str | Path, err: OSError):
    """An AnatomyError naming the output `path` for an OSError met while writing it (disk full, read-only,
    a directory in the way, ...); other errors are returned unchanged to be re-raised."""
    from anatomy.errors import AnatomyError

    if isinstance(err, AnatomyError) or not isinstance(err, OSError) or err.errno not in _WRITE_ERRNOS:
        return err
    reason = err.strerror or str(err)
    return AnatomyError(
        f"{path}: cannot write ({reason})",
        "check that the folder exists, is writable and has free space; nothing was changed",
    )


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError of the enclosed write into a one-line AnatomyError naming `path`."""
    try:
        yield
    except OSError as err:
        wrapped = write_error(path, err)
        if wrapped is err:
            raise
        raise wrapped from None


def _mkstemp_beside(path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way", str(path))
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success move it into place, on error remove it."""
    path = Path(path)
    fd, tmp = _mkstemp_beside(path, f".{path.name}.", ".tmp")
    try:
        with writing(path):
            with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for writers that want a filename (parquet, safetensors, savefig)."""
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Temporary paths beside several outputs, committed together: all replaced, or none.

    They are moved into place in the order given (put the commit point, e.g. a corpus whose metadata is
    the truth, last); if a later move fails, the files already moved are put back as they were.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            fd, tmp_name = _mkstemp_beside(target, f".{target.stem}.", target.suffix or ".tmp")
            os.close(fd)
            temps.append(Path(tmp_name))
        yield temps
        _commit(targets, temps)
    except BaseException as err:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(err, OSError):
            wrapped = write_error(targets[0] if len(targets) == 1 else ", ".join(map(str, targets)), err)
            if wrapped is not err:
                raise wrapped from None
        raise


def _commit(paths: list[Path], temps: list[Path]) -> None:
    backups: list[tuple[Path, Path | None]] = []  # (destination, its old file or None) for rollback
    try:
        for i, (path, tmp) in enumerate(zip(paths, temps, strict=True)):
            with writing(path):
                os.chmod(tmp, _umask_mode())
                backup = None
                if i < len(paths) - 1 and path.is_file():  # the last one needs no rollback
                    backup = Path(tempfile.mktemp(prefix=f".{path.name}.", suffix=".bak", dir=path.parent))
                    try:
                        os.link(path, backup)
                    except OSError:
                        shutil.copy2(path, backup)
                os.replace(tmp, path)
                backups.append((path, backup))
    except BaseException:
        for path, backup in reversed(backups):
            with contextlib.suppress(OSError):
                if backup is None:
                    os.unlink(path)
                else:
                    os.replace(backup, path)
        raise
    finally:
        for _, backup in backups:
            if backup is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup)


def temp_names(path: str | Path) -> re.Pattern:
    """The names atomic_write / atomic_path / atomic_paths give their temporaries for `path`."""
    path = Path(path)
    rand = "[a-z0-9_]{8}"
    by_write = rf"\.{re.escape(path.name)}\.{rand}\.(?:tmp|bak)"
    by_path = rf"\.{re.escape(path.stem)}\.{rand}{re.escape(path.suffix or '.tmp')}"
    return re.compile(f"^(?:{by_write}|{by_path})$")


def clean_temps(path: str | Path) -> list[Path]:
    """Remove temporaries a killed writer of `path` left beside it; call it while holding `locked(path)`."""
    path = Path(path)
    pattern = temp_names(path)
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for child in path.parent.iterdir():
            if pattern.match(child.name) and child.is_file():
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()
                removed.append(child)
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted writer", path, len(removed))
    return removed


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and dataclass-like objects into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null says "not defined" honestly
    if hasattr(value, "__dataclass_fields__"):
        # fields marked json=False stay in memory only; omit_none fields are left out when None
        import dataclasses

        return {  # dataclasses.fields leaves out ClassVars (e.g. a result's SCHEMA_VERSION)
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
            and not (f.metadata.get("omit_none") and getattr(value, f.name) is None)
        }
    return value


def dumps_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, dumps_json(obj))


def read_json(path: str | Path) -> Any:
    from anatomy.errors import InputError

    path = Path(path)
    try:
        with open_regular(path) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not a JSON file (not UTF-8 text: {err.reason} at byte {err.start})"
        ) from None
    except RecursionError:  # e.g. [[[[...]]]] 100,000 deep: Python's decoder gives up
        raise InputError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as err:  # an integer too long to convert
        raise InputError(f"{path}: JSON cannot be read ({err})") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a JSON file") from None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: tuple[str, ...] = _PROVENANCE_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


RESERVED_RESULT_KEYS = ("params", "provenance")  # written by result_payload: a result may not have these


def result_payload(
    data: Mapping[str, Any],
    *,
    command: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | Path] | None = None,
    figures: list[str] | None = None,
) -> dict[str, Any]:
    """The results JSON of an analysis: its numbers plus what produced them (see write_result).

    A result whose own fields are named like the keys added here would be silently overwritten: that is a
    programming error (ValueError), found the first time the analysis runs.
    """
    clash = [key for key in RESERVED_RESULT_KEYS if key in data]
    if clash:
        raise ValueError(
            f"a result field may not be named {' or '.join(map(repr, clash))} (the runner adds it)"
        )
    payload: dict[str, Any] = dict(data)
    payload["params"] = dict(params)
    payload["provenance"] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "command": command,
        "inputs": {
            role: {"name": Path(p).name, "sha256": file_sha256(p)}
            for role, p in sorted((inputs or {}).items())
        },
        "versions": package_versions(),
    }
    if figures is not None:
        payload["provenance"]["figures"] = list(figures)
    return payload


def write_result(
    out_dir: str | Path,
    name: str,
    data: Mapping[str, Any],
    *,
    command: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write DIR/results/NAME.json: the analysis numbers plus what produced them.

    `inputs` maps a role (e.g. "corpus") to a file; its name and sha256 are recorded, not its absolute path,
    so the same inputs in another folder give the same bytes.
    """
    payload = result_payload(data, command=command, params=params, inputs=inputs)
    return write_json(Path(out_dir) / "results" / f"{name}.json", payload)


# ------------------------------------------------------------------------------------------- parquet


def write_parquet(table, path: str | Path) -> Path:
    """Write an Arrow table atomically, with a CRC per data page so a damaged file is detected on read."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
    return Path(path)


def read_parquet(path: str | Path, columns: list[str] | None = None):
    """Read a Parquet file verifying its page checksums; InputError naming the file when it is damaged.

    Files written without checksums (older versions) read as before. This is the check to run before
    reusing a cached table (tokens.parquet): a truncated or bit-flipped file raises instead of being trusted.
    """
    import pyarrow.parquet as pq

    from anatomy.errors import InputError

    check_path(path)
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
        raise InputError(f"{path}: not a readable Parquet file or damaged ({err})") from None

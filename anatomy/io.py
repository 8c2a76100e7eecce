"""Filesystem helpers: atomic writes, hashing, and results JSON with provenance.

Everything the toolkit writes goes through here, so an interrupted run never leaves a half-written file and
a rerun on the same inputs writes the same bytes (no timestamps, stable key order).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import IO, Any

RESULTS_SCHEMA_VERSION = 1

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


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success move it into place, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
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
    return write_json(Path(out_dir) / "results" / f"{name}.json", payload)

"""sources.lock.json: the sha256 and size of every file a fetch verified, recorded on first download.

{"NAME": {"download": {"url", "sha256", "size"}, "files": {"REL/PATH": {"sha256", "size"}}}}. A later fetch
of NAME must produce the same download hash; a file listed under "files" is present only if it still hashes
to what was recorded. Paths are relative to the data folder and use forward slashes. A lock file of another
shape is refused with one line naming it (never half-used).
"""

from __future__ import annotations

import json
from pathlib import Path

from anatomy.io import file_sha256, write_json

LOCK_NAME = "sources.lock.json"
CHUNK = 1 << 20
_HINT = "restore it from version control or delete it to re-record hashes on the next fetch"


def _is_figures(value) -> bool:
    """{"sha256": 64 hex chars, "size": int >= 0, ...}"""
    return (
        isinstance(value, dict)
        and isinstance(value.get("sha256"), str)
        and len(value["sha256"]) == 64
        and isinstance(value.get("size"), int)
        and not isinstance(value.get("size"), bool)
        and value["size"] >= 0
    )


def shape_problem(data) -> str | None:
    """What is wrong with a parsed lock file's shape, or None."""
    if not isinstance(data, dict):
        return f"the top level is a {type(data).__name__}, not an object of datasets"
    for name, entry in data.items():
        if not isinstance(entry, dict):
            return f"entry {name!r} is not an object"
        if "download" in entry and not _is_figures(entry["download"]):
            return f"{name!r}.download is not {{url, sha256, size}}"
        files = entry.get("files", {})
        if not isinstance(files, dict):
            return f"{name!r}.files is not an object"
        for rel, meta in files.items():
            if not _is_figures(meta):
                return f"{name!r}.files[{rel!r}] is not {{sha256, size}}"
        exports = entry.get("exports", {})
        if not isinstance(exports, dict) or not all(isinstance(v, dict) for v in exports.values()):
            return f"{name!r}.exports is not an object of objects"
    return None


class Lock:
    def __init__(self, root: Path):
        from anatomy.datasets.paths import refuse_special
        from anatomy.datasets.registry import DataError

        self.path = Path(root) / LOCK_NAME
        self.data: dict = {}
        refuse_special(self.path)
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
                reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
                raise DataError(f"{self.path}: not a readable lock file ({reason})", _HINT) from None
            problem = shape_problem(data)
            if problem:
                raise DataError(f"{self.path}: not a lock file of this toolkit ({problem})", _HINT)
            self.data = data

    def entry(self, name: str) -> dict:
        return self.data.get(name, {})

    def download_hash(self, name: str) -> str | None:
        return self.entry(name).get("download", {}).get("sha256")

    def download_size(self, name: str) -> int | None:
        return self.entry(name).get("download", {}).get("size")

    def record(self, name: str, download: dict | None, files: dict[str, dict]) -> None:
        entry = self.data.setdefault(name, {})
        if download is not None:
            entry["download"] = download
        entry.setdefault("files", {}).update(files)
        self.data = dict(sorted(self.data.items()))
        write_json(self.path, self.data)

    def verified_files(self, name: str, root: Path) -> tuple[list[str], list[str]]:
        """(files that hash as recorded, files missing or changed) for NAME's recorded files."""
        good: list[str] = []
        bad: list[str] = []
        for rel, meta in sorted(self.entry(name).get("files", {}).items()):
            path = root / rel
            ok = (
                path.is_file()
                and path.stat().st_size == meta.get("size")
                and file_sha256(path) == meta["sha256"]
            )
            (good if ok else bad).append(rel)
        return good, bad

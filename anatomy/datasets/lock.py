"""sources.lock.json: the sha256 and size of every file a fetch verified, recorded on first download.

{"NAME": {"download": {"url", "sha256", "size"}, "files": {"REL/PATH": {"sha256", "size"}}}}. A later fetch
of NAME must produce the same download hash; a file listed under "files" is present only if it still hashes
to what was recorded. Paths are relative to the data folder and use forward slashes.
"""

from __future__ import annotations

import json
from pathlib import Path

from anatomy.io import file_sha256, write_json

LOCK_NAME = "sources.lock.json"
CHUNK = 1 << 20


class Lock:
    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_NAME
        self.data: dict = {}
        if self.path.exists():
            from anatomy.datasets.registry import DataError

            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataError(
                    f"{self.path}: not a readable lock file ({err})",
                    "restore it from version control or delete it to re-record hashes on the next fetch",
                ) from None

    def entry(self, name: str) -> dict:
        return self.data.get(name, {})

    def download_hash(self, name: str) -> str | None:
        return self.entry(name).get("download", {}).get("sha256")

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

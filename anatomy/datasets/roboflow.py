"""RF100-VL through the Roboflow REST API (https://docs.roboflow.com/api): list the rf100-vl workspace's
projects, take each project's latest version, ask for its COCO export link, download the zip and keep only
the `_annotations.coco.json` files (the prompts are their category names; the images are not needed).

Standard library only; the API key comes from ROBOFLOW_API_KEY and never reaches a log line or the lock file.
`--base-url` sends the API calls and the export downloads to a mirror laid out as BASE/HOST/PATH.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

from anatomy.datasets.archive import check_archive, unpack
from anatomy.datasets.fetch import TIMEOUT_S, Limits, Progress, download, finish, mirrored, redact
from anatomy.datasets.lock import Lock
from anatomy.datasets.registry import DataError, Source

KEY_ENV = "ROBOFLOW_API_KEY"
API_DEADLINE_S = 120.0  # one API answer (a few KB of JSON) must arrive within this
API_MAX_BYTES = 64 << 20


def api_key(source: Source) -> str:
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise DataError(
            f"{source.name}: needs a Roboflow API key and {KEY_ENV} is not set",
            f"create a free key at https://app.roboflow.com/settings/api, then `export {KEY_ENV}=...`",
        )
    return key


def _get_json(url: str) -> dict:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "prompt-anatomy"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(_read_bounded(url, response).decode("utf-8"))
    except urllib.error.HTTPError as err:
        hint = f"check {KEY_ENV}" if err.code in (401, 403) else "try again later"
        raise DataError(f"{redact(url)}: HTTP {err.code} {err.reason}", hint) from None
    except (urllib.error.URLError, OSError) as err:
        raise DataError(
            f"{redact(url)}: cannot reach the Roboflow API ({getattr(err, 'reason', err)})"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{redact(url)}: the Roboflow API did not answer with JSON") from None


def _read_bounded(url: str, response) -> bytes:
    """An API answer, read within API_DEADLINE_S and API_MAX_BYTES (a dripping server is given up)."""
    deadline = time.monotonic() + API_DEADLINE_S
    chunks, size = [], 0
    while block := response.read1(1 << 16):
        chunks.append(block)
        size += len(block)
        if size > API_MAX_BYTES or time.monotonic() > deadline:
            why = "too large" if size > API_MAX_BYTES else f"not answered within {API_DEADLINE_S:g} s"
            raise DataError(f"{redact(url)}: the Roboflow API answer is {why}", "try again later")
    return b"".join(chunks)


def _api(source: Source, path: str, key: str, base_url: str | None) -> dict:
    return _get_json(mirrored(f"{source.url}/{path}?api_key={quote(key)}", base_url))


def projects(source: Source, key: str, base_url: str | None) -> list[str]:
    data = _api(source, source.workspace, key, base_url)
    items = (data.get("workspace") or {}).get("projects") or []
    slugs = sorted({str(p["id"]).rsplit("/", 1)[-1] for p in items if isinstance(p, dict) and "id" in p})
    if not slugs:
        raise DataError(f"{source.name}: the Roboflow workspace {source.workspace!r} lists no projects")
    return slugs


def latest_version(source: Source, slug: str, key: str, base_url: str | None) -> int:
    data = _api(source, f"{source.workspace}/{slug}", key, base_url)
    numbers = [
        int(m.group(1))
        for v in data.get("versions") or []
        if isinstance(v, dict) and (m := re.search(r"(\d+)$", str(v.get("id", ""))))
    ]
    if not numbers:
        raise DataError(f"{source.name}: project {slug!r} has no dataset version to export")
    return max(numbers)


def fetch_roboflow(
    source: Source,
    root: Path,
    lock: Lock,
    base_url: str | None,
    progress: Progress | None,
    limits: Limits = Limits(),
) -> str:
    key = api_key(source)
    dest = root / source.dest
    done_before = {rel.split("/")[1] for rel in lock.entry(source.name).get("files", {})}
    fetched = 0
    for slug in projects(source, key, base_url):
        if slug in done_before and all(
            (root / rel).is_file() for rel in lock.entry(source.name)["files"] if rel.split("/")[1] == slug
        ):
            continue
        version = latest_version(source, slug, key, base_url)
        export = _api(source, f"{source.workspace}/{slug}/{version}/coco", key, base_url).get("export") or {}
        link = export.get("link")
        if not isinstance(link, str):
            raise DataError(f"{source.name}: no COCO export link for {slug} version {version}")
        archive = dest / f".{slug}-v{version}-coco.zip"
        got = download(mirrored(link, base_url), archive, progress, slug, limits=limits)
        finish(archive)
        try:
            if got.resumed or not got.delimited:  # no recorded hash vouches for it: its CRCs must
                check_archive(archive)
            files = unpack(archive, dest / slug, source.members, root)
        finally:
            archive.unlink(missing_ok=True)
        lock.record(source.name, None, files)
        lock.data[source.name].setdefault("exports", {})[slug] = {
            "version": version,
            "sha256": got.sha256,
            "size": got.size,
        }
        lock.record(source.name, None, {})
        fetched += 1
    return f"{source.name}: {fetched} dataset(s) fetched into {dest.relative_to(root)}, verified"

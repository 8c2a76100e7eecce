"""Test helpers for `anatomy data`: a loopback HTTP mirror (Range, dropped connections, slow bodies) and
small archives in the official layouts, built from the real files in ../shared/data."""

from __future__ import annotations

import csv
import io
import json
import pickle
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    body: bytes
    mode: str = "normal"  # normal | drop_once (half the body, then close) | slow
    requests: list[str] = field(default_factory=list)  # the Range header of each request ("" = none)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        ranged = self.headers.get("Range", "")
        route.requests.append(ranged)
        start = int(ranged.removeprefix("bytes=").split("-")[0]) if ranged else 0
        body = route.body[start:]
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(route.body) - 1}/{len(route.body)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if route.mode == "drop_once" and len(route.requests) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if route.mode == "slow":
            for i in range(0, len(body), 1024):
                self.wfile.write(body[i : i + 1024])
                self.wfile.flush()
                time.sleep(0.02)
            return
        self.wfile.write(body)


class Mirror:
    """A threaded HTTP server on 127.0.0.1 serving routes laid out as /HOST/PATH (what --base-url expects)."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.routes = {}
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, official_url: str, body: bytes, mode: str = "normal") -> Route:
        path = "/" + official_url.split("://", 1)[1].split("?", 1)[0]
        self.server.routes[path] = route = Route(body, mode)
        return route

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def lvis_zip(shared: Path, split: str) -> bytes:
    """lvis_v1_SPLIT.json.zip as the LVIS site ships it: one JSON with categories beside images/annotations."""
    categories = json.loads((shared / "lvis" / "lvis_v1_categories.json").read_text(encoding="utf-8"))
    doc = {"info": {"version": "1.0"}, "images": [], "annotations": [], "categories": categories}
    return zip_bytes({f"lvis_v1_{split}.json": json.dumps(doc).encode()})


def refs_from_csv(path: Path, split: str) -> list[dict]:
    """Ref dicts in the refer release's shape, one per CSV row (sentences[].sent is the prompt)."""
    refs = []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            sent = row["sent"]
            refs.append(
                {
                    "ref_id": int(row["ref_id"]),
                    "image_id": int(row["img_id"]),
                    "split": split,
                    "category_id": 1,
                    "sentences": [
                        {"sent": sent, "raw": sent, "tokens": sent.split(), "sent_id": int(row["sent_id"])}
                    ],
                }
            )
    return refs


def refer_zip(shared: Path, dataset: str) -> tuple[bytes, set[str]]:
    """DATASET.zip as the refer project ships it (DATASET/refs(BY).p and instances.json), built from the
    shared CSVs; also the set of sentences it holds."""
    members, sentences = {f"{dataset}/instances.json": b'{"images": [], "annotations": []}'}, set()
    by_split_by: dict[str, list[dict]] = {}
    for csv_path in sorted((shared / "refcoco").glob(f"{dataset}_*.csv")):
        _, split_by, split = csv_path.stem.rsplit("_", 2)
        if csv_path.stem.rsplit("_", 2)[0] != dataset:
            continue
        refs = refs_from_csv(csv_path, split)
        by_split_by.setdefault(split_by, []).extend(refs)
        sentences.update(r["sentences"][0]["sent"] for r in refs)
    for split_by, refs in by_split_by.items():
        members[f"{dataset}/refs({split_by}).p"] = pickle.dumps(refs, protocol=2)
    return zip_bytes(members), sentences

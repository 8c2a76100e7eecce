"""Test helpers for `anatomy data`: a loopback HTTP mirror on 127.0.0.1 (Range, dropped connections, slow
bodies, and the misbehaving servers of MODES), small archives in the official layouts built from the real
files in ../shared/data, and hostile zips (encrypted, an unknown method, a bomb)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import random
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODES = {
    "normal": "Range, If-Range (ETag) and 416 as a correct server answers them",
    "drop_once": "the first response sends half the body, then closes",
    "slow": "1 KB every 20 ms",
    "ignore_range": "the first response drops halfway; every later one ignores Range (200, whole body)",
    "botch_range": "the first response drops halfway; a Range request gets 206 with a wrong Content-Range",
    "lie_range": "the first response drops halfway; a Range request gets a correct header over bytes from 0",
    "drip": "Content-Length, then one byte every Route.drip_s (for at most DRIP_LIMIT_S)",
    "cut_no_length": "no Content-Length; half the body, then close (every time)",
    "cut_no_length_once": "no Content-Length; half the body, then close (the first time only)",
    "no_length": "no Content-Length; the whole body, then close",
}
DRIP_LIMIT_S = 20.0  # a dripping response stops by itself after this long
MAX_REQUESTS = 50  # a route answers 503 after this many requests (a client stuck in a loop is bounded)


@dataclass
class Route:
    body: bytes
    mode: str = "normal"  # one of MODES
    requests: list[str] = field(default_factory=list)  # the Range header of each request ("" = none)
    if_range: list[str] = field(default_factory=list)  # the If-Range header of each request ("" = none)
    drip_s: float = 0.2

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


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
        route.if_range.append(self.headers.get("If-Range", ""))
        if len(route.requests) > MAX_REQUESTS:
            self.send_error(503)
            return
        mode, first, size = route.mode, len(route.requests) == 1, len(route.body)
        if mode in ("ignore_range", "botch_range", "lie_range") and first:
            mode = "drop_once"
        elif mode == "drop_once" and not first:
            mode = "normal"
        if mode == "cut_no_length_once":
            mode = "cut_no_length" if first else "normal"
        if mode in ("cut_no_length", "no_length"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(route.body if mode == "no_length" else route.body[: size // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "ignore_range" or self.headers.get("If-Range", route.etag) != route.etag:
            ranged = ""  # answer with the whole body
        start = int(ranged.removeprefix("bytes=").split("-")[0]) if ranged else 0
        if ranged and start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = route.body[start:]
        self.send_response(206 if ranged else 200)
        self.send_header("ETag", route.etag)
        if ranged:
            content_range = f"bytes {start}-{size - 1}/{size}"
            if mode == "botch_range":
                content_range, body = f"bytes 0-{size - 1}/{size}", route.body
            elif mode == "lie_range":
                body = route.body[: size - start]  # the header says START-, the bytes are from 0
            self.send_header("Content-Range", content_range)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self._send(route, mode, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, route: Route, mode: str, body: bytes) -> None:
        if mode == "drop_once":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "slow":
            for i in range(0, len(body), 1024):
                self.wfile.write(body[i : i + 1024])
                self.wfile.flush()
                time.sleep(0.02)
            return
        if mode == "drip":
            stop = time.monotonic() + DRIP_LIMIT_S
            for i in range(len(body)):
                if time.monotonic() > stop:
                    break
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(route.drip_s)
            self.close_connection = True
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


def patched_zip(members: dict[str, bytes], flag_bits: int = 0, method: int | None = None) -> bytes:
    """A stored zip whose local and central headers are patched: flag bits OR-ed in (bit 0: encrypted), and
    the compression method replaced (99 is WinZip AES, which zipfile cannot read)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at != -1:
            flags = int.from_bytes(raw[at + flags_at : at + flags_at + 2], "little") | flag_bits
            raw[at + flags_at : at + flags_at + 2] = flags.to_bytes(2, "little")
            if method is not None:
                raw[at + flags_at + 2 : at + flags_at + 4] = method.to_bytes(2, "little")
            at = raw.find(signature, at + 4)
    return bytes(raw)


def bomb_zip(name: str, size: int) -> bytes:
    """One member of `size` zero bytes, deflated (about 1000x smaller): a single-layer zip bomb."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as out:
        block = bytes(1 << 20)
        for _ in range(size >> 20):
            out.write(block)
    return buffer.getvalue()


def lvis_doc(n: int, seed: int = 0) -> bytes:
    """An LVIS-shaped JSON of n categories with random names (about 40 bytes each, poorly compressible)."""
    rng = random.Random(seed)
    names = [f"{rng.getrandbits(64):016x} {rng.getrandbits(32):08x}" for _ in range(n)]
    cats = [{"id": i + 1, "name": name, "synonyms": [name]} for i, name in enumerate(names)]
    return json.dumps({"images": [], "annotations": [], "categories": cats}).encode()


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

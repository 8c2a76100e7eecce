"""`anatomy data` against a misbehaving loopback server (127.0.0.1 only) and a hostile data folder, one test
per class: Range ignored, botched or lied about; a .part longer than the file or of another file; bodies
closed early without a Content-Length; a server that drips bytes; encrypted, unknown-method and bomb zips;
two fetches into one folder; and `data ingest` committing all readers or none (test_data_refusals.py has
the lock files, URLs, FIFOs and devices).

Every server here is a thread of this process that answers a bounded number of requests and stops by itself
(data_mirror.MAX_REQUESTS, DRIP_LIMIT_S); subprocesses run under a timeout, so a hang fails instead of
blocking the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from data_mirror import Mirror, bomb_zip, lvis_doc, patched_zip, zip_bytes
from typer.testing import CliRunner

import anatomy.datasets.fetch as fetch_module
from anatomy.cli import app
from anatomy.corpus import load_corpus
from anatomy.datasets.archive import unpack
from anatomy.datasets.fetch import mirrored
from anatomy.datasets.registry import BY_NAME, DataError

ROOT = Path(__file__).resolve().parent.parent
LVIS, REFCOCO = BY_NAME["lvis-v1-val"], BY_NAME["refcoco"]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def fetch(raw: Path, mirror: Mirror, *names: str, extra: tuple[str, ...] = ()):
    return invoke(
        "data", "fetch", *(names or ("lvis-v1-val",)), "--out", raw, "--base-url", mirror.url, "-q", *extra
    )


@pytest.fixture(scope="module")
def lvis_body() -> bytes:
    return zip_bytes({"lvis_v1_val.json": lvis_doc(6000)})


def _unpacked_ok(raw: Path, body: bytes) -> None:
    assert (raw / "lvis" / "lvis_v1_val.json.zip").read_bytes() == body
    assert not list(raw.rglob("*.part")) and not list(raw.rglob("*.part.meta"))
    lock = json.loads((raw / "sources.lock.json").read_text())
    assert lock["lvis-v1-val"]["download"]["sha256"] == hashlib.sha256(body).hexdigest()


# ------------------------------------------------------------------------------------- Range handling


def test_server_ignoring_range_makes_the_download_start_over(lvis_body, tmp_path):
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "ignore_range")
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    assert route.requests[0] == "" and route.requests[1].startswith("bytes=")  # resumed, got 200, used it
    _unpacked_ok(tmp_path, lvis_body)


def test_server_botching_content_range_makes_the_download_start_over(lvis_body, tmp_path):
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "botch_range")
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    # asked for the rest, got 206 for bytes 0-: refused, the next request starts over without Range
    assert route.requests[1].startswith("bytes=") and route.requests[2] == ""
    _unpacked_ok(tmp_path, lvis_body)


@pytest.mark.parametrize("recorded", [False, True], ids=["first fetch", "hash recorded"])
def test_server_lying_about_the_range_is_caught_from_the_first_byte(lvis_body, tmp_path, recorded):
    """Right Content-Range, wrong bytes: only a check of the whole file finds it (the archive's CRCs on a
    first fetch, the recorded sha256 later); the download then starts over and is whole."""
    if recorded:
        digest = hashlib.sha256(lvis_body).hexdigest()
        entry = {"download": {"url": LVIS.url, "sha256": digest, "size": len(lvis_body)}, "files": {}}
        (tmp_path / "sources.lock.json").write_text(json.dumps({"lvis-v1-val": entry}))
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "lie_range")
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    assert route.requests[1].startswith("bytes=") and route.requests[-1] == ""
    _unpacked_ok(tmp_path, lvis_body)


def _stale_part(raw: Path, mirror: Mirror, data: bytes, meta: dict | None) -> Path:
    part = raw / "lvis" / "lvis_v1_val.json.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    if meta is not None:
        url = mirrored(LVIS.url, mirror.url)
        meta = {"url": url, "etag": None, "last_modified": None, "total": None, **meta}
        part.with_name(part.name + ".meta").write_text(json.dumps(meta))
    return part


def test_part_longer_than_the_file_is_discarded(lvis_body, tmp_path):
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body)
        _stale_part(tmp_path, m, lvis_body + b"x" * 100, {})
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    assert route.requests == [f"bytes={len(lvis_body) + 100}-", ""]  # 416, then from the start
    _unpacked_ok(tmp_path, lvis_body)


@pytest.mark.parametrize("meta", [None, {"etag": '"another-file"'}, {"url": "http://elsewhere/x.zip"}])
def test_part_of_another_file_is_discarded(lvis_body, tmp_path, meta):
    other = zip_bytes({"lvis_v1_val.json": lvis_doc(6000, seed=1)})[: len(lvis_body) // 2]
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body)
        _stale_part(tmp_path, m, other, meta)
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    if meta and "etag" in meta:  # resumed with If-Range: the server answered with the whole new file
        assert route.if_range == ['"another-file"'] and len(route.requests) == 1
    else:  # no record of where it came from, or another URL: never resumed
        assert route.requests == [""]
    _unpacked_ok(tmp_path, lvis_body)


# ------------------------------------------------------------------------------ close-delimited bodies


def test_close_delimited_body_cut_short_is_refused_on_a_first_fetch(lvis_body, tmp_path):
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "cut_no_length")
        m.add(REFCOCO.url, zip_bytes({"refcoco/refs(unc).p": b"refs"}))
        result = fetch(tmp_path, m, "lvis-v1-val", "refcoco")
    assert result.exit_code == 1
    assert "no Content-Length" in result.stderr and "nothing kept" in result.stderr
    assert len(route.requests) == 2  # started over once, then refused
    assert not (tmp_path / "lvis").exists() or not list((tmp_path / "lvis").iterdir())
    lock = json.loads((tmp_path / "sources.lock.json").read_text())
    assert set(lock) == {"refcoco"}  # the other dataset went on


def test_close_delimited_whole_body_is_accepted_and_says_how_it_was_checked(lvis_body, tmp_path):
    with Mirror() as m:
        m.add(LVIS.url, lvis_body, "no_length")
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    assert "no Content-Length" in result.stdout and "CRCs" in result.stdout
    _unpacked_ok(tmp_path, lvis_body)


def test_close_delimited_body_cut_short_resumes_to_the_recorded_size(lvis_body, tmp_path):
    digest = hashlib.sha256(lvis_body).hexdigest()
    entry = {"download": {"url": LVIS.url, "sha256": digest, "size": len(lvis_body)}, "files": {}}
    (tmp_path / "sources.lock.json").write_text(json.dumps({"lvis-v1-val": entry}))
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "cut_no_length_once")
        result = fetch(tmp_path, m)
    assert result.exit_code == 0, result.output
    assert route.requests == ["", f"bytes={len(lvis_body) // 2}-"]  # short of the recorded size: resumed
    _unpacked_ok(tmp_path, lvis_body)


# -------------------------------------------------------------------------------------------- drips


def test_dripping_server_hits_the_deadline_and_the_part_resumes(lvis_body, tmp_path):
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "drip")
        route.drip_s = 0.1
        result = fetch(tmp_path, m, extra=("--deadline", "1.5"))
        assert result.exit_code == 1
        assert "gave up" in result.stderr and "--deadline of 1.5 s" in result.stderr
        part = tmp_path / "lvis" / "lvis_v1_val.json.zip.part"
        kept = part.stat().st_size
        assert 0 < kept < 100 and "bytes kept in lvis_v1_val.json.zip.part" in result.stderr
        route.mode = "normal"
        again = fetch(tmp_path, m)
    assert again.exit_code == 0, again.output
    assert route.requests[-1] == f"bytes={kept}-"
    _unpacked_ok(tmp_path, lvis_body)


def test_dripping_server_below_the_minimum_rate_is_given_up(lvis_body, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module, "RATE_WINDOW_S", 0.5)
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "drip")
        route.drip_s = 0.05  # about 20 bytes/s
        result = fetch(tmp_path, m, extra=("--min-rate", "500"))
    assert result.exit_code == 1
    assert "below the --min-rate of 500" in result.stderr and len(route.requests) == 1
    assert (tmp_path / "lvis" / "lvis_v1_val.json.zip.part").stat().st_size > 0


@pytest.mark.parametrize("option", [("--deadline", "0"), ("--deadline", "-1"), ("--min-rate", "-5")])
def test_deadline_and_min_rate_are_ranged(tmp_path, option):
    result = invoke("data", "fetch", "lvis-v1-val", "--out", tmp_path / "raw", *option)
    assert result.exit_code == 2 and not (tmp_path / "raw").exists()


# ------------------------------------------------------------------------------------ hostile archives


@pytest.mark.parametrize(
    "kind, message",
    [("encrypted", "is encrypted"), ("method", "compression method 99"), ("bomb", "zip bomb")],
)
def test_hostile_archive_fails_its_dataset_only(tmp_path, kind, message):
    body = {
        "encrypted": lambda: patched_zip({"lvis_v1_val.json": b"{}"}, flag_bits=0x1),
        "method": lambda: patched_zip({"lvis_v1_val.json": b"{}"}, method=99),
        "bomb": lambda: bomb_zip("lvis_v1_val.json", 64 << 20),
    }[kind]()
    with Mirror() as m:
        m.add(LVIS.url, body)
        m.add(REFCOCO.url, zip_bytes({"refcoco/refs(unc).p": b"refs"}))
        result = fetch(tmp_path, m, "lvis-v1-val", "refcoco")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr and "1 of 2 dataset(s) not fetched: lvis-v1-val" in result.stderr
    assert (tmp_path / "refcoco" / "refcoco" / "refs(unc).p").read_bytes() == b"refs"
    assert not (tmp_path / "lvis" / "lvis_v1_val.json").exists()
    assert set(json.loads((tmp_path / "sources.lock.json").read_text())) == {"refcoco"}


@pytest.mark.parametrize("declared", [100, 5000])
def test_member_whose_size_differs_from_its_header_is_refused(tmp_path, declared):
    raw = bytearray(zip_bytes({"a.json": b"[" + b"1," * 999 + b"1]"}))  # 2,001 bytes
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # the uncompressed size fields
        offset = raw.find(signature) + at
        raw[offset : offset + 4] = declared.to_bytes(4, "little")
    archive = tmp_path / "a.zip"
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="damaged archive|declared"):
        unpack(archive, tmp_path / "out", ("*.json",), tmp_path)
    assert not (tmp_path / "out" / "a.json").exists()


def test_tar_bomb_is_refused(tmp_path):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("lvis_v1_val.json")
        info.size = 64 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="archive bomb"):
        unpack(archive, tmp_path / "out", ("*.json",), tmp_path)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- concurrent writers


def test_two_fetches_into_one_folder_run_one_after_the_other(lvis_body, tmp_path):
    raw = tmp_path / "raw"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Mirror() as m:
        route = m.add(LVIS.url, lvis_body, "slow")
        cmd = [sys.executable, "-m", "anatomy", "data", "fetch", "lvis-v1-val", "--out", str(raw)]
        cmd += ["--base-url", m.url, "-q"]
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
        outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("unpacked") == 1 and stdout.count("already present") == 1
    assert route.requests == [""]  # one download, never two writers on one .part
    _unpacked_ok(raw, lvis_body)
    assert zipfile.ZipFile(raw / "lvis" / "lvis_v1_val.json.zip").testzip() is None


# ------------------------------------------------------------------------------------ data ingest


def test_data_ingest_commits_all_readers_or_none(tmp_path):
    raw, corpus = tmp_path / "raw", tmp_path / "corpus.parquet"
    (raw / "lvis").mkdir(parents=True)
    (raw / "lvis" / "lvis_v1_val.json").write_bytes(lvis_doc(50, seed=1))
    assert invoke("data", "ingest", "--data", raw, "--out", corpus, "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    # a new lvis file (the first reader) and a damaged refcoco pickle (the second)
    (raw / "lvis" / "lvis_v1_train.json").write_bytes(lvis_doc(50, seed=2))
    (raw / "refcoco" / "refcoco").mkdir(parents=True)
    (raw / "refcoco" / "refcoco" / "refs(unc).p").write_bytes(b"\x80\x02 not a pickle")
    result = invoke("data", "ingest", "--data", raw, "--out", corpus, "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "refs(unc).p" in result.stderr and ".stage." not in result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "raw"])  # no stage left
    # without the damaged file the new lvis file does change the corpus (so the refusal above mattered)
    (raw / "refcoco" / "refcoco" / "refs(unc).p").unlink()
    assert invoke("data", "ingest", "--data", raw, "--out", corpus, "-q").exit_code == 0
    assert load_corpus(corpus).prompt.nunique() == 100

"""`anatomy data fetch/list/ingest` over plain HTTP, against a loopback mirror in the official layouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from data_mirror import Mirror, lvis_zip, refer_zip, zip_bytes
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus import load_corpus
from anatomy.corpus.normalize import normalize
from anatomy.datasets.archive import member_target, unpack
from anatomy.datasets.fetch import mirrored
from anatomy.datasets.registry import BY_NAME, DataError

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def archives(shared_data) -> dict[str, tuple[bytes, set[str]]]:
    """Each HTTP source's archive in its official layout (built once), with the sentences it holds."""
    built = {
        "lvis-v1-val": (lvis_zip(shared_data, "val"), set()),
        "lvis-v1-train": (lvis_zip(shared_data, "train"), set()),
    }
    for name in ("refcoco", "refcoco+", "refcocog"):
        built[name] = refer_zip(shared_data, name)
    return built


@pytest.fixture
def mirror(archives):
    """The loopback mirror; refcoco's first response drops the connection halfway."""
    with Mirror() as m:
        m.routes_by_name = {
            name: m.add(BY_NAME[name].url, body, "drop_once" if name == "refcoco" else "normal")
            for name, (body, _) in archives.items()
        }
        m.sentences = {name: sentences for name, (_, sentences) in archives.items()}
        yield m


def test_mirrored_url_keeps_host_and_path():
    url = "https://dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip"
    assert (
        mirrored(url, "http://127.0.0.1:9/m/")
        == "http://127.0.0.1:9/m/dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip"
    )
    assert mirrored(url, None) == url


def test_fetch_list_ingest_round_trip(mirror, tmp_path):
    raw = tmp_path / "raw"
    result = invoke(
        "data",
        "fetch",
        "lvis-v1-val",
        "lvis-v1-train",
        "refcoco",
        "refcoco+",
        "refcocog",
        "--out",
        str(raw),
        "--base-url",
        mirror.url,
        "-q",
    )
    assert result.exit_code == 0, result.output
    # official layout: the archive kept, the members the readers need unpacked, instances.json not
    assert (raw / "lvis" / "lvis_v1_val.json").is_file() and (raw / "lvis" / "lvis_v1_val.json.zip").is_file()
    assert sorted(p.name for p in (raw / "refcoco" / "refcocog").iterdir()) == [
        "refs(google).p",
        "refs(umd).p",
    ]
    assert not (raw / "refcoco" / "refcoco" / "instances.json").exists()
    assert not list(raw.rglob("*.part"))
    # the dropped connection was resumed with a Range request from where it stopped
    requests = mirror.routes_by_name["refcoco"].requests
    assert (
        len(requests) == 2
        and requests[0] == ""
        and requests[1].startswith("bytes=")
        and requests[1] != "bytes=0-"
    )
    lock = json.loads((raw / "sources.lock.json").read_text())
    body = zipfile.ZipFile(raw / "refcoco" / "refcoco.zip")  # the resumed file is whole and valid
    assert body.testzip() is None
    assert lock["refcoco"]["download"]["url"] == BY_NAME["refcoco"].url  # the official URL, not the mirror
    assert set(lock["refcoco"]["files"]) == {"refcoco/refcoco/refs(unc).p"}

    listed = invoke("data", "list", "--out", str(raw), "--json")
    states = {s["name"]: s["state"] for s in json.loads(listed.stdout)}
    assert states["lvis-v1-val"] == states["refcoco"] == "present"
    assert states["saco-gold"] == states["rf100vl"] == "missing"

    again = invoke("data", "fetch", "refcoco", "--out", str(raw), "--base-url", mirror.url, "-q")
    assert "already present" in again.stdout and len(mirror.routes_by_name["refcoco"].requests) == 2

    corpus = tmp_path / "corpus.parquet"
    result = invoke("data", "ingest", "--data", str(raw), "--out", str(corpus), "-q")
    assert result.exit_code == 0, result.output
    frame = load_corpus(corpus)
    assert frame[frame.source == "lvis"].prompt.nunique() == 1203  # train and val name the same 1,203
    for name in ("refcoco", "refcoco+", "refcocog"):
        got = set(frame[(frame.source == "refcoco") & frame.subset.str.startswith(f"{name}(")].prompt)
        assert got == {normalize(s) for s in mirror.sentences[name]}, name


def test_wrong_hash_is_refused_and_nothing_kept(mirror, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lock = {"lvis-v1-val": {"download": {"url": "x", "sha256": "0" * 64, "size": 1}, "files": {}}}
    (raw / "sources.lock.json").write_text(json.dumps(lock))
    result = invoke("data", "fetch", "lvis-v1-val", "--out", str(raw), "--base-url", mirror.url, "-q")
    assert result.exit_code == 1
    assert "download refused" in result.stderr and "nothing kept" in result.stderr
    assert [p.name for p in raw.rglob("*") if p.is_file()] == ["sources.lock.json"]
    assert json.loads((raw / "sources.lock.json").read_text()) == lock


def test_unknown_name_and_bad_base_url_fail_before_work(tmp_path):
    result = invoke("data", "fetch", "lvis-v2", "--out", str(tmp_path / "raw"))
    assert result.exit_code == 2 and "unknown dataset lvis-v2" in result.stderr  # a usage error
    assert invoke("data", "fetch", "--base-url", "ftp://x", "--out", str(tmp_path)).exit_code == 2
    assert not (tmp_path / "raw").exists()


def test_http_error_is_one_line(tmp_path):
    with Mirror() as m:
        result = invoke("data", "fetch", "lvis-v1-val", "--out", str(tmp_path), "--base-url", m.url, "-q")
    assert result.exit_code == 1 and "HTTP 404" in result.stderr and "Traceback" not in result.output


def test_unpack_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"ok/a.json": b"{}", "../outside.json": b"{}"}))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="outside the data folder"):
        unpack(archive, dest, ("*.json",), tmp_path)
    assert not (tmp_path / "outside.json").exists()
    for bad in ("/etc/passwd", "a/../../b", "C:/x"):
        with pytest.raises(DataError):
            member_target(dest, bad)


def test_sigint_leaves_no_half_file_and_the_next_fetch_resumes(archives, tmp_path):
    raw = tmp_path / "raw"
    body = archives["lvis-v1-val"][0]
    with Mirror() as m:
        route = m.add(BY_NAME["lvis-v1-val"].url, body, "slow")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [
            sys.executable,
            "-m",
            "anatomy",
            "data",
            "fetch",
            "lvis-v1-val",
            "--out",
            str(raw),
            "--base-url",
            m.url,
            "-q",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        part = raw / "lvis" / "lvis_v1_val.json.zip.part"
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size > 4096) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert (
            not (raw / "lvis" / "lvis_v1_val.json.zip").exists()
            and not (raw / "lvis" / "lvis_v1_val.json").exists()
        )
        assert not (raw / "sources.lock.json").exists()
        kept = part.stat().st_size
        assert 0 < kept < len(body)
        route.mode = "normal"
        result = invoke("data", "fetch", "lvis-v1-val", "--out", str(raw), "--base-url", m.url, "-q")
    assert result.exit_code == 0, result.output
    assert route.requests[-1] == f"bytes={kept}-"
    assert (raw / "lvis" / "lvis_v1_val.json.zip").read_bytes() == body and not part.exists()


def test_make_data_and_the_reports_corpus_read_the_registry(mirror, tmp_path):
    """`make data` against the mirror, then the reports corpus recipe on what it fetched."""
    raw, reports = tmp_path / "raw", tmp_path / "reports"
    venv = Path(sys.prefix)
    make = ["make", "-C", str(ROOT), f"VENV={venv}", "-o", str(venv / ".installed"), f"DATA_RAW={raw}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fetched = subprocess.run(
        [*make, "data", "DATASETS=lvis-v1-val refcoco+", f"BASE_URL={mirror.url}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert (raw / "refcoco" / "refcoco+" / "refs(unc).p").is_file()
    assert "lvis-v1-val" in fetched.stdout and "present" in fetched.stdout
    built = subprocess.run(
        [*make, f"REPORTS={reports}", f"{reports}/corpus.parquet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    frame = load_corpus(reports / "corpus.parquet")
    assert set(frame.source) == {"lvis", "refcoco"}  # DATA defaulted to DATA_RAW: it holds a lock file
    assert frame[frame.source == "lvis"].prompt.nunique() == 1203

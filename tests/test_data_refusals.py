"""`anatomy data` refusing what it must not use, before opening it: lock files of the wrong shape, bad
--base-url values, a missing data folder, and FIFOs or devices wherever a file or folder is expected (each
command runs in a subprocess under a timeout, so a hang fails instead of blocking the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_mirror import Mirror, lvis_doc, zip_bytes
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.datasets.registry import BY_NAME

ROOT = Path(__file__).resolve().parent.parent
LVIS, REFCOCO = BY_NAME["lvis-v1-val"], BY_NAME["refcoco"]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------------------------- lock files, URLs


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"lvis-v1-val": "x"}',
        '{"lvis-v1-val": {"download": {"sha256": 5}}}',
        '{"lvis-v1-val": {"files": {"lvis/x.json": {"sha256": "ab", "size": -1}}}}',
        '{"lvis-v1-val": {"files": []}}',
        "[" * 100_000,
    ],
)
@pytest.mark.parametrize("command", ["fetch", "list"])
def test_lock_file_of_the_wrong_shape_is_one_line(tmp_path, content, command):
    (tmp_path / "sources.lock.json").write_text(content)
    args = ["--base-url", "http://127.0.0.1:9", "lvis-v1-val"] if command == "fetch" else []
    result = invoke("data", command, "--out", tmp_path, *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    first = result.stderr.splitlines()[0]
    assert "sources.lock.json" in first and ("not a lock file" in first or "not a readable" in first)
    assert (tmp_path / "sources.lock.json").read_text() == content


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/my mirror", "http://mïrror.example/", "http://127.0.0.1:99999/", "http:///x",
     "http://h/\tx", "http://h/?q=1"],
)  # fmt: skip
def test_base_url_with_spaces_unicode_or_bad_parts_is_a_usage_error(tmp_path, url):
    result = invoke("data", "fetch", "lvis-v1-val", "--out", tmp_path / "raw", "--base-url", url)
    assert result.exit_code == 2 and "--base-url" in result.stderr
    assert not (tmp_path / "raw").exists()


def test_inputs_on_a_missing_folder_is_an_error(tmp_path):
    result = invoke("data", "inputs", "--data", tmp_path / "nope")
    assert result.exit_code == 1 and "no such data folder" in result.stderr
    result = invoke("data", "inputs", "--data", tmp_path / "nope", "--deps")
    assert result.exit_code == 1 and result.stdout == ""


# ------------------------------------------------------------------------------------- special files


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        return subprocess.run(
            [sys.executable, "-m", "anatomy", *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"anatomy {' '.join(args)} blocked for {timeout} s")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize(
    "fifo, command",
    [
        ("sources.lock.json", "fetch"),
        ("sources.lock.json", "list"),
        ("lvis/lvis_v1_val.json.zip", "fetch"),
        ("lvis/lvis_v1_val.json.zip.part", "fetch"),
        ("lvis/lvis_v1_val.json.zip.part.meta", "fetch"),
        ("refcoco/refcoco/refs(unc).p", "fetch"),
        ("lvis/lvis_v1_train.json", "inputs"),
        ("lvis/lvis_v1_train.json", "ingest"),
        ("corpus.parquet", "ingest"),
        ("rf100vl/pets/train/_annotations.coco.json", "ingest"),
    ],
)
def test_fifos_are_refused_without_blocking(tmp_path, fifo, command):
    raw = tmp_path / "raw"
    (raw / "lvis").mkdir(parents=True)
    (raw / "lvis" / "lvis_v1_val.json").write_bytes(lvis_doc(20))
    path = tmp_path / fifo if fifo == "corpus.parquet" else raw / fifo
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    if fifo.endswith(".part.meta"):  # the record of a .part that exists (a lone .meta is just replaced)
        path.with_suffix("").write_bytes(b"PK")
    with Mirror() as m:
        m.add(LVIS.url, zip_bytes({"lvis_v1_val.json": lvis_doc(20)}))
        m.add(REFCOCO.url, zip_bytes({"refcoco/refs(unc).p": b"refs"}))
        names = ["refcoco"] if "refcoco" in fifo else ["lvis-v1-val"]
        args = {
            "fetch": ["data", "fetch", *names, "--out", str(raw), "--base-url", m.url, "-q"],
            "list": ["data", "list", "--out", str(raw)],
            "inputs": ["data", "inputs", "--data", str(raw)],
            "ingest": ["data", "ingest", "--data", str(raw), "--out", str(tmp_path / "corpus.parquet"), "-q"],
        }[command]
        done = _run(*args)
    # a path given on the command line (--out) is refused as a usage error before any work; files found
    # inside the data folder are data errors
    assert done.returncode == (2 if fifo == "corpus.parquet" else 1), done.stderr
    assert "FIFO" in done.stderr and "Traceback" not in done.stderr
    assert path.is_fifo()


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this platform")
@pytest.mark.parametrize(
    "link, args",
    [
        ("sources.lock.json", ["data", "list", "--out", "{raw}"]),
        ("lvis/lvis_v1_train.json", ["data", "inputs", "--data", "{raw}"]),
        ("lvis/lvis_v1_val.json.zip", ["data", "fetch", "lvis-v1-val", "--out", "{raw}", "--base-url",
                                       "http://127.0.0.1:9", "-q"]),
    ],
)  # fmt: skip
def test_devices_are_refused_without_reading_them(tmp_path, link, args):
    """A symlink to /dev/zero would stream zeros forever (hashing, JSON parsing): refused by its stat."""
    raw = tmp_path / "raw"
    (raw / "lvis").mkdir(parents=True)
    (raw / link).symlink_to("/dev/zero")
    done = _run(*(a.replace("{raw}", str(raw)) for a in args))
    assert done.returncode == 1, done.stderr
    assert "is a device" in done.stderr and "Traceback" not in done.stderr

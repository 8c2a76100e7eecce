"""Ingest under hostile conditions: concurrent writers (real processes), side files that cannot be written,
inputs that are outputs, encodings spelled differently, corpus files that are not corpora, absurd lines."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.corpus import LONG_PROMPT_CHARS, manifest_path, read_manifest
from anatomy.corpus.sources import ReadOptions
from anatomy.errors import AnatomyError, InputError
from anatomy.locks import locked

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _ingest_proc(path: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "anatomy", "ingest", "text", str(path), "--out", str(out), "--quiet"]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_ingests_keep_both_inputs(tmp_path):
    """Two real `anatomy ingest` processes into one corpus, started together, several times: the union."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"alpha prompt {i}\n" for i in range(3000)), encoding="utf-8")
    b.write_text("".join(f"beta prompt {i}\n" for i in range(3000)), encoding="utf-8")
    for trial in range(4):
        out = tmp_path / f"c{trial}.parquet"
        procs = [_ingest_proc(a, out), _ingest_proc(b, out)]
        for proc in procs:
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
            assert "Traceback" not in stderr
        frame = load_corpus(out)
        assert sorted(set(frame["subset"])) == ["a", "b"], f"trial {trial}: an input was lost"
        assert len(frame) == 6000 and int(frame["count"].sum()) == 6000
        names = sorted(Path(m["input"]).name for m in read_manifest(out))
        assert names == ["a.txt", "b.txt"]
        side = json.loads(manifest_path(out).read_text(encoding="utf-8"))
        assert sorted(Path(m["input"]).name for m in side["inputs"]) == ["a.txt", "b.txt"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock or temp left


def test_a_held_lock_gives_one_clear_error_naming_the_holder(tmp_path):
    out = tmp_path / "c.parquet"
    code = (
        "import sys, time; from anatomy.locks import locked\n"
        f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(AnatomyError, match=f"pid {holder.pid}"), locked(out, timeout=0.3):
            pass
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()
    with locked(out, timeout=5):  # a killed holder's lock is free at once
        pass


def test_killed_writers_temporaries_are_cleaned_on_the_next_ingest(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a cat\na dog\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    ingest("text", [str(src)], out)
    leftovers = [tmp_path / ".c.k1ll3d_x.parquet", tmp_path / ".c.manifest.abcd1234.json"]
    keep = tmp_path / ".other.abcd1234.parquet"  # another output's temporary is not ours to remove
    for p in [*leftovers, keep]:
        p.write_bytes(b"half")
    src2 = tmp_path / "q.txt"
    src2.write_text("a bird\n", encoding="utf-8")
    ingest("text", [str(src2)], out)
    assert not any(p.exists() for p in leftovers)
    assert keep.exists()


def test_manifest_that_cannot_be_written_leaves_the_old_pair(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    ingest("text", [str(src)], out)
    side = manifest_path(out)
    before = out.read_bytes()
    side.unlink()
    side.mkdir()  # a directory in the manifest's place
    src2 = tmp_path / "q.txt"
    src2.write_text("a dog\n", encoding="utf-8")
    with pytest.raises(AnatomyError) as info:
        ingest("text", [str(src2)], out)
    assert str(side) in str(info.value) and "Traceback" not in str(info.value)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.manifest.json", "c.parquet", "p.txt", "q.txt"]


def test_a_failed_corpus_commit_puts_the_manifest_back(tmp_path, monkeypatch):
    """The manifest copy is committed first; if the corpus then cannot be moved into place it is restored."""
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    ingest("text", [str(src)], out)
    before = (out.read_bytes(), manifest_path(out).read_bytes())
    real_replace = os.replace

    def replace(a, b):
        if Path(b) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    src2 = tmp_path / "q.txt"
    src2.write_text("a dog\n", encoding="utf-8")
    with pytest.raises(AnatomyError, match="No space left on device"):
        ingest("text", [str(src2)], out)
    monkeypatch.undo()
    assert (out.read_bytes(), manifest_path(out).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.manifest.json", "c.parquet", "p.txt", "q.txt"]


@pytest.mark.parametrize("which", ["manifest", "corpus"])
def test_an_output_is_never_read_as_an_input(tmp_path, which):
    src = tmp_path / "X.txt"
    src.write_text("a cat\n", encoding="utf-8")
    out = tmp_path / "X.parquet"
    ingest("text", [str(src)], out)
    before = (out.read_bytes(), manifest_path(out).read_bytes())
    victim = manifest_path(out) if which == "manifest" else out
    with pytest.raises(InputError, match="is an output of this ingest"):
        ingest("text", [str(victim)], out)
    assert (out.read_bytes(), manifest_path(out).read_bytes()) == before


def test_a_new_corpus_may_not_be_its_own_input(tmp_path):
    src = tmp_path / "X.txt"
    src.write_text("a cat\n", encoding="utf-8")
    with pytest.raises(InputError, match="is an output of this ingest"):
        ingest("text", [str(src)], src)
    assert src.read_text(encoding="utf-8") == "a cat\n"


def test_encoding_spelling_does_not_change_the_inputs_identity(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("".join(f"prompt {i}\n" for i in range(100)), encoding="utf-8")
    out = tmp_path / "c.parquet"
    for spelling in ("utf-8", "utf8", "UTF-8", "utf_8", "U8"):
        report = ingest("text", [str(src)], out, ReadOptions(encoding=spelling))
        assert report.files[0].already_ingested == (spelling != "utf-8")
    assert int(load_corpus(out)["count"].sum()) == 100
    assert [m["options"]["encoding"] for m in read_manifest(out)] == ["utf-8"]


def test_unknown_encoding_fails_before_any_work(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown encoding 'nonsense'"):
        ingest("text", [str(src)], tmp_path / "c.parquet", ReadOptions(encoding="nonsense"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]


def test_absurdly_long_lines_are_reported(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n" + "x" * (LONG_PROMPT_CHARS + 1) + "\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    stats = ingest("text", [str(src)], out).files[0]
    assert (stats.long_prompts, stats.longest, stats.kept) == (1, LONG_PROMPT_CHARS + 1, 2)
    assert "over 100,000 characters" in stats.warnings[0]
    assert read_manifest(out)[0]["long_prompts"] == 1
    short = tmp_path / "q.txt"
    short.write_text("a dog\n", encoding="utf-8")
    ingest("text", [str(short)], out)
    assert "long_prompts" not in read_manifest(out)[1]  # said only when there is something to say


# ------------------------------------------------------------------------- corpus files that are not


def _corpus_table(**overrides) -> pa.Table:
    columns = {
        "prompt": pa.array(["a cat", "a dog"]),
        "raw": pa.array(["a cat", "a dog"]),
        "source": pa.array(["text", "text"]),
        "subset": pa.array(["p", "p"]),
        "count": pa.array([1, 2], pa.int64()),
        "ref": pa.array(["p:1", "p:2"]),
        "meta": pa.array(["", ""]),
    }
    columns.update(overrides)
    return pa.table(columns)


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"count": pa.array(["1", "2"])}, "column 'count' holds string, expected integers"),
        ({"count": pa.array([1.0, 2.0])}, "column 'count' holds double"),
        ({"prompt": pa.array([1, 2])}, "column 'prompt' holds int64, expected strings"),
        ({"source": pa.array(["text", None])}, "column 'source' has 1 missing (null)"),
        ({"count": pa.array([1, None], pa.int64())}, "column 'count' has 1 missing (null)"),
        ({"count": pa.array([1, 0], pa.int64())}, "column 'count' has values below 1"),
        ({"prompt": pa.array(["a cat", ""])}, "column 'prompt' has empty prompts"),
    ],
)
def test_a_corpus_with_wrong_types_or_nulls_is_refused(tmp_path, overrides, phrase):
    path = tmp_path / "c.parquet"
    pq.write_table(_corpus_table(**overrides), path)
    with pytest.raises(InputError) as info:
        load_corpus(path)
    assert phrase in str(info.value) and str(path) in str(info.value)
    with pytest.raises(InputError, match="column"):  # nor is it merged into
        src = tmp_path / "p.txt"
        src.write_text("a bird\n", encoding="utf-8")
        ingest("text", [str(src)], path)


def test_an_empty_corpus_is_refused_by_readers_but_can_be_ingested_into(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(_corpus_table().slice(0, 0), path)
    with pytest.raises(InputError, match="the corpus has no rows"):
        load_corpus(path)
    assert len(load_corpus(path, allow_empty=True)) == 0
    src = tmp_path / "p.txt"
    src.write_text("a bird\n", encoding="utf-8")
    ingest("text", [str(src)], path)
    assert load_corpus(path)["prompt"].tolist() == ["a bird"]


def test_a_damaged_corpus_is_detected(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("".join(f"prompt number {i}\n" for i in range(2000)), encoding="utf-8")
    out = tmp_path / "c.parquet"
    ingest("text", [str(src)], out)
    data = bytearray(out.read_bytes())
    for at in (200, len(data) // 3):  # inside the first data pages
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        out.write_bytes(damaged)
        with pytest.raises(InputError, match=str(out)):
            load_corpus(out)
    out.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_corpus(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_line_naming_the_path(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(AnatomyError, match="cannot write"):
            ingest("text", [str(src)], folder / "c.parquet")
    finally:
        folder.chmod(0o700)


def test_an_output_under_a_file_is_one_line_naming_the_path(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a cat\n", encoding="utf-8")
    with pytest.raises(AnatomyError, match="cannot write") as info:
        ingest("text", [str(src)], src / "c.parquet")  # a "folder" that is a file
    assert str(src) in str(info.value)

"""`anatomy ingest` on bad input: a one- or two-line message with exit 1 and no traceback, or a counted skip."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from anatomy.cli import app

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_clean_error(result, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and len(lines) <= 2, result.output
    flat = " ".join(result.output.split())
    for phrase in phrases:
        assert phrase in flat, result.output


def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "lvis.json"
    path.write_text('[\n  {"name": "cat",}\n]\n', encoding="utf-8")
    assert_clean_error(
        run("ingest", "lvis", path, "--out", tmp_path / "c.parquet"),
        "lvis.json: invalid JSON at line 2, column 18",
    )


def test_malformed_csv_names_file_and_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt\ndog\n"unclosed cat\nbird\n', encoding="utf-8")
    assert_clean_error(
        run("ingest", "text", path, "--out", tmp_path / "c.parquet"), "p.csv: malformed CSV at line 4"
    )


def test_unexpected_structure_names_expected_and_found_keys(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"videos": [], "info": {}}), encoding="utf-8")
    assert_clean_error(
        run("ingest", "saco", path, "--out", tmp_path / "c.parquet"),
        "expected SA-Co JSON",
        "found an object with keys ['info', 'videos']",
    )


def test_non_utf8_names_offset_and_encoding_option_fixes_it(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    out = tmp_path / "c.parquet"
    assert_clean_error(
        run("ingest", "text", path, "--out", out),
        "p.txt: bytes at offset 3 are not valid utf-8",
        "--encoding",
    )
    result = run("ingest", "text", path, "--out", out, "--encoding", "latin-1", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["n_rows"] == 1


def test_empty_and_non_string_prompts_are_counted_skips_with_reasons(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"p": "cat"}\n{"p": ""}\n{"p": null}\n{"p": "   "}\n{"p": "Cat"}\n', encoding="utf-8")
    result = run("ingest", "text", path, "--field", "p", "--out", tmp_path / "c.parquet")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "read 5, kept 1, merged 1 duplicates, skipped 3" in flat
    assert "skipped 2: empty prompt" in flat and "skipped 1: not a string (NoneType)" in flat


def test_missing_path(tmp_path):
    assert_clean_error(
        run("ingest", "text", tmp_path / "nope.txt", "--out", tmp_path / "c.parquet"),
        "nope.txt: no such file",
    )


def test_empty_result(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("\n  \n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    assert_clean_error(run("ingest", "text", path, "--out", out), "no prompts found")
    assert not out.exists()
    good = tmp_path / "good.txt"
    good.write_text("dog\n", encoding="utf-8")
    assert run("ingest", "text", good, "--out", out).exit_code == 0
    before = out.read_bytes()
    assert_clean_error(run("ingest", "text", path, "--out", out), "no prompts found")  # also when merging
    assert out.read_bytes() == before


def test_unknown_source_is_a_usage_error(tmp_path):
    result = run("ingest", "coco", tmp_path, "--out", tmp_path / "c.parquet")
    assert result.exit_code == 2 and "'coco' is not one of" in " ".join(result.output.split())
    assert not (tmp_path / "c.parquet").exists()


def test_malicious_pickle_is_refused(tmp_path):
    import pickle

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(print))  # any global, even a harmless one, is refused
    assert_clean_error(
        run("ingest", "refcoco", path, "--out", tmp_path / "c.parquet"), "refuses to load builtins.print"
    )


@pytest.mark.parametrize(
    "name, content",
    [("bad.json", b'{"categories": [}'), ("p.txt", b"\xff\xfe\xfa"), ("p.csv", b'prompt\n"open')],
)
def test_failing_ingest_leaves_existing_corpus_and_manifest_untouched(tmp_path, name, content):
    good = tmp_path / "good.txt"
    good.write_text("white dog\nred car\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    assert run("ingest", "text", good, "--out", out).exit_code == 0
    manifest = tmp_path / "c.manifest.json"
    before = out.read_bytes(), manifest.read_bytes()
    bad = tmp_path / name
    bad.write_bytes(content)
    source = "lvis" if name.endswith(".json") else "text"
    more = tmp_path / "more.txt"
    more.write_text("blue bird\n", encoding="utf-8")
    result = run("ingest", source, more if source == "text" else bad, bad, "--out", out)
    assert result.exit_code == 1
    assert (out.read_bytes(), manifest.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_corpus_command_on_a_non_corpus(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet")
    assert_clean_error(run("corpus", path), "x.parquet: not a readable Parquet file")


@pytest.mark.parametrize(
    ("name", "content", "options", "flag"),
    [
        ("t.txt", "a dog\n", ["--column", "x"], "--column"),
        ("t.txt", "a dog\n", ["--field", "x"], "--field"),
        ("j.jsonl", '{"prompt": "x", "text": "y"}\n', ["--column", "text"], "--column"),  # read prompt anyway
        ("c.csv", "prompt\nx\n", ["--field", "prompt"], "--field"),
        ("t.txt", "a dog\n", ["--synonyms"], "--synonyms"),
    ],
)
def test_an_option_no_input_reads_is_a_usage_error(tmp_path, name, content, options, flag):
    (tmp_path / name).write_text(content)
    result = run("ingest", "text", tmp_path / name, *options, "--out", tmp_path / "c.parquet")
    assert result.exit_code == 2 and flag in result.output, result.output
    assert not (tmp_path / "c.parquet").exists()


def test_the_same_bytes_read_another_way_are_refused_not_counted_twice(tmp_path):
    """Re-reading an ingested file with another encoding, or a default column against a named one, would
    count its records again; another named column of a table is other prompts, and both are kept."""
    out = tmp_path / "c.parquet"
    (tmp_path / "t.txt").write_text("a dog\ncat\n")
    assert run("ingest", "text", tmp_path / "t.txt", "--out", out).exit_code == 0
    before = out.read_bytes()
    again = run("ingest", "text", tmp_path / "t.txt", "--encoding", "latin-1", "--out", out)
    assert_clean_error(again, "t.txt: its bytes are in", "would count its records twice")
    assert out.read_bytes() == before
    (tmp_path / "j.jsonl").write_text('{"prompt": "x"}\n')
    assert run("ingest", "text", tmp_path / "j.jsonl", "--out", out).exit_code == 0
    assert_clean_error(run("ingest", "text", tmp_path / "j.jsonl", "--field", "prompt", "--out", out))
    (tmp_path / "two.csv").write_text("prompt,caption\ndog,a dog\ncat,a cat\n")
    for column in ("prompt", "caption", "prompt"):  # the third: already in, nothing changes
        assert run("ingest", "text", tmp_path / "two.csv", "--column", column, "--out", out).exit_code == 0
    summary = json.loads(run("corpus", out, "--json").output)
    assert summary["occurrences"] == 2 + 1 + 4


def test_a_lone_surrogate_is_a_counted_skip(tmp_path):
    (tmp_path / "s.json").write_text('["\\ud83d", "ok"]')
    (tmp_path / "s.jsonl").write_text('{"prompt": "\\udc80x"}\n{"prompt": "ok"}\n')
    for name in ("s.json", "s.jsonl"):
        result = run(
            "ingest", "text", tmp_path / name, "--engine", "python", "--out", tmp_path / f"{name}.parquet"
        )
        assert result.exit_code == 0, result.output
        assert "kept 1" in result.output and "not valid Unicode (lone surrogate)" in result.output


def test_out_must_be_a_parquet_name_and_memory_limit_is_checked_for_either_engine(tmp_path):
    """c.csv and c.parquet would share c.manifest.json (side files are named by the stem): refused. A bad
    --memory-limit is a usage error even where the Python reader runs."""
    (tmp_path / "t.txt").write_text("a dog\n")
    assert_clean_error(
        run("ingest", "text", tmp_path / "t.txt", "--out", tmp_path / "c.csv"), "must name a corpus .parquet"
    )
    assert not (tmp_path / "c.manifest.json").exists()
    bad = run("ingest", "text", tmp_path / "t.txt", "--memory-limit", "abc", "--out", tmp_path / "c.parquet")
    assert bad.exit_code == 2 and "is not a size" in bad.output


def test_a_parquet_dataset_given_as_dot_is_named_after_its_folder(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = tmp_path / "lake"
    lake.mkdir()
    pq.write_table(pa.table({"prompt": ["a dog", "cat"], "count": [3, 4]}), lake / "part-0.parquet")
    monkeypatch.chdir(lake)
    assert run("ingest", "text", ".", "--out", tmp_path / "c.parquet").exit_code == 0
    summary = json.loads(run("corpus", tmp_path / "c.parquet", "--json").output)
    assert summary["sources"]["text"]["subsets"] == {"lake": 2} and summary["occurrences"] == 7


def test_messages_name_the_way_through(tmp_path):
    """Each refusal's hint names something that works for that input."""
    import gzip

    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"prompt,t\ndog,2026-01-01\n"))
    timed = run(
        "ingest", "text", tmp_path / "t.csv.gz", "--time-column", "t", "--out", tmp_path / "a.parquet"
    )
    assert timed.exit_code == 2 and "timestamps are read by the Python reader" in " ".join(
        timed.output.split()
    )
    (tmp_path / "u.txt").write_bytes("a dog\n".encode("utf-16"))
    assert_clean_error(
        run("ingest", "text", tmp_path / "u.txt", "--out", tmp_path / "b.parquet"), "--encoding utf-16"
    )
    builtin = run("ingest", "text", "builtin:imagenet-classes", "--out", tmp_path / "c.parquet")
    assert_clean_error(
        builtin, "a built-in set, not a file", "anatomy ingest builtin builtin:imagenet-classes"
    )
    (tmp_path / "long.txt.gz").write_bytes(gzip.compress(b"a" * 3_000_000 + b"\nshort\n"))
    long = run("ingest", "text", tmp_path / "long.txt.gz", "--out", tmp_path / "d.parquet")
    assert_clean_error(long, "Maximum line size", "decompress it", "--engine python")

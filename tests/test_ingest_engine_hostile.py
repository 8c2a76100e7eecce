"""Ingest on hostile inputs, by both paths (the Python readers and the DuckDB engine): a pipe is read once
(never an empty corpus), count/time options where no count can be read are usage errors, counts of every
shape are read as traffic.parse_count reads them, and every refusal is one clear line naming file and
cause."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus.corpus import ingest, read_manifest
from anatomy.corpus.engine import EngineOptions
from anatomy.corpus.sources import ReadOptions
from anatomy.errors import InputError, OptionError

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb")

PY, DUCK = EngineOptions(engine="python"), EngineOptions(engine="duckdb")
ENGINES = {"python": PY, "duckdb": DUCK}


def rows(corpus: Path) -> list[tuple]:
    return [
        (r["prompt"], r["raw"], r["subset"], r["count"], r["ref"]) for r in pq.read_table(corpus).to_pylist()
    ]


def pipe_with(data: bytes) -> str:
    """A pipe holding `data` (its writer closed), as /dev/fd/N: what `<(printf ...)` hands a command."""
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_fd, data), os.close(write_fd)), daemon=True)
    writer.start()
    return f"/dev/fd/{read_fd}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".spool-" in p.name or ".engine-" in p.name)


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_a_pipe_is_read_once_into_the_same_corpus_as_its_file(tmp_path: Path, engine: str) -> None:
    data = b"White Dog\nwhite  dog\ncat\n\n"
    (tmp_path / "file").write_bytes(data)
    ingest("text", [str(tmp_path / "file")], tmp_path / "f.parquet", engine=ENGINES[engine])
    spec = pipe_with(data)
    report = ingest("text", [spec], tmp_path / "p.parquet", engine=ENGINES[engine])
    name = Path(spec).name  # refs and the subset use the pipe's own name, as they use a file's
    assert rows(tmp_path / "p.parquet") == [("white dog", "White Dog", name, 2, f"{name}:1"),
                                            ("cat", "cat", name, 1, f"{name}:3")]  # fmt: skip
    entry = read_manifest(tmp_path / "p.parquet")[0]
    assert entry["input"] == spec and entry["sha256"] == read_manifest(tmp_path / "f.parquet")[0]["sha256"]
    assert (report.files[0].read, report.files[0].skipped) == (4, 1)
    assert leftovers(tmp_path) == []


def test_a_pipe_on_the_command_line_and_a_failing_one_leaves_no_spool(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    result = CliRunner().invoke(app, ["ingest", "text", pipe_with(b"a\nb\n"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "read 2, kept 2" in result.output and len(rows(out)) == 2
    (tmp_path / ".c.parquet.spool-stale").mkdir()  # left by a killed ingest: removed under the lock
    bad = CliRunner().invoke(app, ["ingest", "text", pipe_with(b"ok\n\xff\xfe\n"), "--out", str(out),
                                   "--engine", "duckdb"])  # fmt: skip
    assert bad.exit_code == 1 and "not valid UTF-8" in bad.output and "Traceback" not in bad.output
    assert leftovers(tmp_path) == [] and len(rows(out)) == 2


def test_an_empty_pipe_is_refused_never_an_empty_corpus(tmp_path: Path) -> None:
    for engine in (PY, DUCK):
        with pytest.raises(InputError, match="FIFO .* nothing was written"):
            ingest("text", [pipe_with(b"")], tmp_path / "c.parquet", engine=engine)
    assert not (tmp_path / "c.parquet").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "flag", "words"),
    [("log.txt", "--count-column", "one-prompt-per-line"), ("list.json", "--count-field", "JSON list"),
     ("log.txt.gz", "--time-column", "one-prompt-per-line"), ("-", "--count-field", "one-prompt-per-line")],
)  # fmt: skip
def test_count_and_time_options_on_files_without_counts_are_usage_errors(tmp_path, name, flag, words):
    if name != "-":
        (tmp_path / name).write_bytes(gzip.compress(b"dog\n") if name.endswith(".gz") else b'["dog"]\n')
    spec = name if name == "-" else str(tmp_path / name)
    argv = ["ingest", "text", spec, flag, "n", "--out", str(tmp_path / "c.parquet")]
    result = CliRunner().invoke(app, argv, input="dog\n")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert flag.rsplit("-", 1)[0] in text and words in text
    assert not (tmp_path / "c.parquet").exists()
    with pytest.raises(OptionError):  # the library refuses too, before any work
        ingest("text", [spec], tmp_path / "c.parquet", ReadOptions(count="n"))


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_every_count_invalid_names_the_cause_not_the_column(tmp_path: Path, engine: str) -> None:
    (tmp_path / "c.csv").write_text("prompt,n\ndog,lots\ncat,-1\nfish,0\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        ingest("text", [str(tmp_path / "c.csv")], tmp_path / "c.parquet", ReadOptions(count="n"),
               ENGINES[engine])  # fmt: skip
    message = info.value.message
    assert "3 records skipped" in message and "count is not a positive whole number" in message
    assert "c.csv:2" in message and "'lots'" in message
    assert "--count-column" in info.value.hint and "--column" not in info.value.hint.replace(
        "--count-column", ""
    )


def test_an_empty_file_says_it_has_no_records(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    for engine in (PY, DUCK):
        with pytest.raises(InputError, match="empty.txt: it holds no records"):
            ingest("text", [str(tmp_path / "empty.txt")], tmp_path / "c.parquet", engine=engine)


COUNTS = ["4", " 5 ", "3.0", "3.5", "1e3", "0", "-2", "", "lots", "1000000000000", "1000000000001",
          "99999999999999999999999", "²", "٣", "0007", "nan", "inf", "1_000"]  # fmt: skip


def both(tmp_path: Path, name: str, options: ReadOptions):
    out = {}
    for engine, eopts in ENGINES.items():
        corpus = tmp_path / f"{engine}.parquet"
        report = ingest("text", [str(tmp_path / name)], corpus, options, eopts)
        out[engine] = (pq.read_table(corpus).to_pylist(), read_manifest(corpus), report.n_rows)
        corpus.unlink()
    return out["python"], out["duckdb"]


def test_csv_counts_of_every_shape_as_the_python_reader(tmp_path: Path) -> None:
    lines = ["prompt,n"] + [f"p{i},{c}" for i, c in enumerate(COUNTS)] + ["short"]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    python, engine = both(tmp_path, "c.csv", ReadOptions(count="n"))
    assert engine == python
    counts = {r["prompt"]: r["count"] for r in engine[0]}
    assert counts == {"p0": 4, "p1": 5, "p2": 3, "p4": 1000, "p9": 10**12, "p13": 3, "p14": 7, "p17": 1000}
    skips = engine[1][0]["skips"]
    assert skips["count is not a positive whole number"]["count"] == len(COUNTS) - len(counts)
    assert skips["row has fewer fields than the header"]["count"] == 1


def test_jsonl_counts_of_every_shape_as_the_python_reader(tmp_path: Path) -> None:
    values = [*COUNTS, 4, 3.0, 3.5, -1, 0, True, None, [2], {"n": 2}, 10**12, 10**12 + 1, 1e300, 2**70]
    lines = [json.dumps({"p": f"p{i}", "n": v}) for i, v in enumerate(values)] + ['{"p": "no count"}']
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    python, engine = both(tmp_path, "c.jsonl", ReadOptions(field="p", count="n"))
    assert engine == python
    assert engine[1][0]["skips"]["no field 'n'"]["count"] == 1
    assert engine[1][0]["kept"] == 8 + 3  # 8 of the strings above, and 4, 3.0 and 10**12


def test_parquet_counts_whole_and_in_range_only(tmp_path: Path) -> None:
    import pyarrow as pa

    prompts = ["a", "b", "c", "d", "e", "f"]
    for name, values in (("ints", [3, 0, -1, 10**12, 10**12 + 1, None]),
                         ("floats", [3.0, 3.5, float("nan"), float("inf"), 2.0, None])):  # fmt: skip
        pq.write_table(pa.table({"prompt": prompts, "count": values}), tmp_path / f"{name}.parquet")
    ingest("text", [str(tmp_path / "ints.parquet"), str(tmp_path / "floats.parquet")], tmp_path / "c.parquet")
    got = {(r["subset"], r["prompt"]): r["count"] for r in pq.read_table(tmp_path / "c.parquet").to_pylist()}
    assert got == {("ints", "a"): 3, ("ints", "d"): 10**12, ("floats", "a"): 3, ("floats", "e"): 2}
    manifest = read_manifest(tmp_path / "c.parquet")
    assert [m["skips"]["count is not a positive whole number"]["count"] for m in manifest] == [4, 4]


LOG = "".join(f"prompt number {i}\n" for i in range(5000)).encode()


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [("cut.txt.gz", lambda p: p.write_bytes(gzip.compress(LOG)[:2000]), "damaged or incomplete"),
     ("bad.txt", lambda p: p.write_bytes(b"dog\n\xff\xfe\n"), "line 2 is not valid UTF-8"),
     ("folder", lambda p: p.mkdir(), "no .parquet files")],
    ids=["truncated-gzip", "invalid-utf8", "empty-folder"],
)  # fmt: skip
def test_engine_refusals_are_one_clear_line(tmp_path: Path, name, make, words) -> None:
    path = tmp_path / name
    make(path)
    out = tmp_path / "c.parquet"
    result = CliRunner().invoke(app, ["ingest", "text", str(path), "--out", str(out), "--engine", "duckdb"])
    assert result.exit_code == 1 and words in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not out.exists() and leftovers(tmp_path) == []


def test_the_same_input_twice_is_counted_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("dog\ncat\ndog\n", encoding="utf-8")
    for engine in (PY, DUCK):
        out = tmp_path / f"{engine.engine}.parquet"
        report = ingest("text", [str(tmp_path / "a.txt"), str(tmp_path / "a.txt")], out, engine=engine)
        assert [f.already_ingested for f in report.files] == [False, True]
        assert [(r[0], r[3]) for r in rows(out)] == [("dog", 2), ("cat", 1)]


def test_a_glob_must_match_files_the_engine_reads(tmp_path: Path) -> None:
    (tmp_path / "mixed").mkdir(), (tmp_path / "folders" / "sub").mkdir(parents=True)
    (tmp_path / "mixed" / "a.txt").write_text("dog\n", encoding="utf-8")
    (tmp_path / "mixed" / "b.json").write_text('["dog"]', encoding="utf-8")
    with pytest.raises(InputError, match="matches .*b.json, which the engine does not read"):
        ingest("text", [str(tmp_path / "mixed" / "*")], tmp_path / "c.parquet")
    with pytest.raises(InputError, match="matches only folders"):
        ingest("text", [str(tmp_path / "folders" / "*")], tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()


def test_count_options_with_a_glob_look_at_the_files_it_matches(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.csv").write_text("prompt,n\ndog,3\n", encoding="utf-8")
    report = ingest("text", [str(tmp_path / "logs" / "*")], tmp_path / "c.parquet", ReadOptions(count="n"))
    assert report.files[0].kept == 1 and rows(tmp_path / "c.parquet")[0][3] == 3
    (tmp_path / "logs" / "b.txt").write_text("cat\n", encoding="utf-8")
    with pytest.raises(OptionError, match="b.txt is a one-prompt-per-line file"):
        ingest("text", [str(tmp_path / "logs" / "*")], tmp_path / "d.parquet", ReadOptions(count="n"))


def test_engine_duckdb_with_inputs_it_cannot_read_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text('["dog"]', encoding="utf-8")
    out = str(tmp_path / "c.parquet")
    for spec, words in (("-", "does not read stdin"), (str(tmp_path / "list.json"), "does not read")):
        result = CliRunner().invoke(
            app, ["ingest", "text", spec, "--out", out, "--engine", "duckdb"], input="a\n"
        )
        assert result.exit_code == 2 and words in " ".join(result.output.split()), result.output
    with pytest.raises(OptionError, match="UTF-8 only"):
        ingest("text", [str(tmp_path / "list.json")], out, ReadOptions(encoding="latin-1"), DUCK)


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_counts_summing_past_int64_are_refused_not_wrapped(tmp_path: Path, engine: str) -> None:
    import pyarrow as pa

    (tmp_path / "a.txt").write_text("dog\n", encoding="utf-8")
    corpus = tmp_path / "c.parquet"
    ingest("text", [str(tmp_path / "a.txt")], corpus, engine=PY)
    table = pq.read_table(corpus)  # a corpus whose count is near the int64 limit (its manifest kept)
    table = table.set_column(table.column_names.index("count"), "count", pa.array([2**63 - 5], pa.int64()))
    pq.write_table(table, corpus)
    before = corpus.read_bytes()
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.csv").write_text("prompt,n\ndog,10\n", encoding="utf-8")  # the same subset, "a"
    with pytest.raises(InputError, match="counts of 'dog' sum .*corpus count holds"):
        ingest("text", [str(tmp_path / "more" / "a.csv")], corpus, ReadOptions(count="n"), ENGINES[engine])
    assert corpus.read_bytes() == before and leftovers(tmp_path) == []

"""The DuckDB ingest engine: its SQL normalisation equals normalize(), and it builds the same corpus, manifest
and counts as the Python readers on the same text inputs (plain, CRLF, BOM, CR alone, csv, jsonl), reads
gzip/zstd, globs and `(prompt, count)` Parquet, caps its memory and leaves no spill folder behind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus import engine_sql as sql
from anatomy.corpus.corpus import ingest, read_manifest
from anatomy.corpus.engine import EngineOptions, memory_limit_bytes
from anatomy.corpus.normalize import PLAIN_ASCII, normalize
from anatomy.corpus.sources import ReadOptions, SourceFile, get_reader
from anatomy.errors import InputError, OptionError

duckdb = pytest.importorskip("duckdb")
pq = pytest.importorskip("pyarrow.parquet")

PY, DUCK = EngineOptions(engine="python"), EngineOptions(engine="duckdb")
EDGE_LINES = ["White  Dog", "", "   ", "white dog", "  the Man in RED ", "café  crème", "Caf\u00e9 cr\u00e8me",
              "R&amp;D lab", "tom & jerry", "\u3000", "\u72ac", "x" * 300, "a\tb", "A\x01b", "white dog "]  # fmt: skip


def sql_forms(con, texts: list[str]) -> list[tuple[bool, str | None]]:
    """(fast_match, fast_prompt) of each text, computed by DuckDB."""
    import pyarrow as pa

    con.register("texts", pa.table({"i": list(range(len(texts))), "raw": texts}))
    rows = con.execute(
        f"SELECT {sql.fast_match('raw')}, CASE WHEN {sql.fast_match('raw')} THEN {sql.fast_prompt('raw')} END "
        "FROM texts ORDER BY i"
    ).fetchall()
    con.unregister("texts")
    return rows


def check_sql_equals_python(con, texts: list[str]) -> None:
    for text, (fast, prompt) in zip(texts, sql_forms(con, texts), strict=True):
        assert fast == bool(PLAIN_ASCII.fullmatch(text)), repr(text)
        if fast:
            assert prompt == normalize(text), repr(text)


def test_sql_normalisation_equals_python_on_every_shared_prompt(shared_data: Path) -> None:
    plan = [("lvis", [shared_data / "lvis" / "lvis_v1_categories.json"], ReadOptions(synonyms=True)),
            ("refcoco", sorted((shared_data / "refcoco").glob("*.csv")), ReadOptions()),
            ("saco", [shared_data / "saco" / "toy_saco_veval_sav_test_gt.json"], ReadOptions()),
            ("rf100vl", [shared_data / "rf100vl" / "rf100v1_labels_names.json"], ReadOptions()),
            ("text", [shared_data / "coco" / "yoloworld_coco_class_texts.json",
                      shared_data / "v3det" / "category_name_13204_v3det_2023_v1.txt"], ReadOptions())]  # fmt: skip
    texts = []
    for source, paths, options in plan:
        reader = get_reader(source)
        for path in paths:
            texts += [
                r.raw
                for r in reader(SourceFile(str(path)), options)
                if isinstance(getattr(r, "raw", None), str)
            ]
    assert len(texts) > 100_000
    check_sql_equals_python(duckdb.connect(), texts)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(), st.text(alphabet=" aAzZ&;\t\x1f~!\x7f"), st.from_regex(r"[ -~]*", fullmatch=True)
        )
    )
)
def test_sql_normalisation_equals_python_on_generated_text(texts: list[str]) -> None:
    check_sql_equals_python(duckdb.connect(), texts + EDGE_LINES)


def both(tmp_path: Path, inputs: list[str], options: ReadOptions = ReadOptions(), before: list[str] = ()):
    """Ingest `inputs` (after `before`, by the Python path) with each path; the two corpora's rows and reports."""
    out = {}
    for name, engine in (("python", PY), ("duckdb", DUCK)):
        corpus = tmp_path / f"{name}.parquet"
        if before:
            ingest("text", before, corpus, options, PY)
        report = ingest("text", inputs, corpus, options, engine)
        assert not list(tmp_path.glob(".*.engine-*")), "spill folder left behind"
        out[name] = (pq.read_table(corpus).to_pylist(), read_manifest(corpus), report)
    return out["python"], out["duckdb"]


def assert_same(python, engine) -> None:
    assert engine[0] == python[0]  # every row, in order: prompt, raw, source, subset, count, ref, meta
    assert engine[1] == python[1]  # the manifest: sha256, options, read/kept/merged/skipped, skip examples
    assert (engine[2].n_rows, engine[2].n_distinct_prompts) == (
        python[2].n_rows,
        python[2].n_distinct_prompts,
    )


def test_engine_equals_python_on_a_generated_log(tmp_path: Path) -> None:
    from benchmarks.logs import write_log

    log = tmp_path / "traffic.txt"
    write_log(log, 30_000)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("\n".join(EDGE_LINES) + "\n\n")
    python, engine = both(tmp_path, [str(log)])
    assert_same(python, engine)
    stats = engine[1][0]
    assert stats["read"] == 30_000 + len(EDGE_LINES) + 1 == stats["kept"] + stats["merged"] + stats["skipped"]
    assert stats["skips"]["empty prompt"]["count"] == 4


@pytest.mark.parametrize("ending", ["\n", "\r\n", "mixed", "cr", "bom"])
def test_engine_equals_python_on_line_endings(tmp_path: Path, ending: str) -> None:
    lines = ["Red Car", "", "red  car", "blue\x0bsky", "a\u2028b", "Blue Sky"]
    if ending == "mixed":
        data = "\r\n".join(lines[:3]) + "\n" + "\n".join(lines[3:])
    elif ending == "cr":  # a CR alone: the Python reader keeps it inside the line; the engine hands it over
        data = "\n".join(lines) + "\nx\ry\n"
    else:
        data = ("\ufeff" if ending == "bom" else "") + (ending if ending != "bom" else "\n").join(lines)
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "p.txt"
    path.write_bytes(data.encode())
    assert_same(*both(tmp_path, [str(path)]))


def test_engine_merges_into_a_corpus_as_python_does(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "p.txt").write_text("dog\nCat\ncat\nbird\n", encoding="utf-8")
    (tmp_path / "b" / "p.txt").write_text("bird\nfish\n  DOG\ncat\n", encoding="utf-8")  # same subset "p"
    (tmp_path / "q.txt").write_text("dog\nfish\n", encoding="utf-8")
    python, engine = both(tmp_path, [str(tmp_path / "b" / "p.txt"), str(tmp_path / "q.txt")],
                          before=[str(tmp_path / "a" / "p.txt")])  # fmt: skip
    assert_same(python, engine)
    counts = {(r["subset"], r["prompt"]): r["count"] for r in engine[0]}
    assert counts == {
        ("p", "dog"): 2,
        ("p", "cat"): 3,
        ("p", "bird"): 2,
        ("p", "fish"): 1,
        ("q", "dog"): 1,
        ("q", "fish"): 1,
    }
    again = ingest("text", [str(tmp_path / "q.txt")], tmp_path / "duckdb.parquet", ReadOptions(), DUCK)
    assert again.files[0].already_ingested


def test_engine_equals_python_on_jsonl_and_csv(tmp_path: Path) -> None:
    rows = ['{"prompt": "A  Dog", "n": 2}', "", '{"prompt": "a dog"}', "not json", "[1, 2]", '{"text": "x"}',
            '{"prompt": 5}', '{"prompt": null}', '{"prompt": ["a"]}', '{"prompt": "caf\\u00e9"}', '{"prompt": " "}']  # fmt: skip
    (tmp_path / "log.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert_same(*both(tmp_path, [str(tmp_path / "log.jsonl")]))
    csv = 'id,prompt,n\n1,A  Dog,3\n2,"a, dog",1\n3\n4,a dog,2\n5,,1\n6,"say ""hi""",1\n'
    (tmp_path / "log.csv").write_text(csv, encoding="utf-8")
    (tmp_path / "log.tsv").write_text(csv.replace(",", "\t"), encoding="utf-8")
    for name in ("log.csv", "log.tsv"):
        for stale in tmp_path.glob("*.parquet"):
            stale.unlink()
        assert_same(*both(tmp_path, [str(tmp_path / name)], ReadOptions(column="prompt")))


def test_engine_equals_python_on_shared_text_files(shared_data: Path, tmp_path: Path) -> None:
    inputs = [str(shared_data / "v3det" / "category_name_13204_v3det_2023_v1.txt"),
              str(shared_data / "refcoco" / "refcoco_unc_val.csv")]  # fmt: skip
    assert_same(*both(tmp_path, inputs, ReadOptions(column="sent")))


def test_compressed_files_and_globs_read_as_their_plain_text(tmp_path: Path) -> None:
    import pyarrow as pa

    text = "White Dog\nwhite dog\n\nCAT\ncafé\r\n".replace("\r\n", "\n")
    (tmp_path / "plain").mkdir(), (tmp_path / "packed").mkdir()
    for name in ("a", "b"):
        (tmp_path / "plain" / f"{name}.txt").write_text(text + name + "\n", encoding="utf-8")
    (tmp_path / "packed" / "a.txt.gz").write_bytes(gzip.compress((text + "a\n").encode()))
    with pa.CompressedOutputStream(str(tmp_path / "packed" / "b.txt.zst"), "zstd") as stream:
        stream.write((text + "b\n").encode())
    ingest(
        "text",
        [str(tmp_path / "plain" / "a.txt"), str(tmp_path / "plain" / "b.txt")],
        tmp_path / "py.parquet",
        engine=PY,
    )
    report = ingest("text", [str(tmp_path / "packed" / "*.txt.*")], tmp_path / "eng.parquet")  # auto: a glob
    assert [f.input for f in report.files] == [
        str(tmp_path / "packed" / n) for n in ("a.txt.gz", "b.txt.zst")
    ]
    assert (
        pq.read_table(tmp_path / "eng.parquet").to_pylist()
        == pq.read_table(tmp_path / "py.parquet").to_pylist()
    )
    with pytest.raises(InputError, match="no file matches"):
        ingest("text", [str(tmp_path / "packed" / "*.nothing")], tmp_path / "eng.parquet")


def test_aggregated_parquet_with_counts_is_first_class(tmp_path: Path) -> None:
    import pyarrow as pa

    table = pa.table({"prompt": ["White Dog", "white  dog", "cat", None, "", "fish", "café"],
                      "count": [10, 5, 3, 4, 2, 0, 7]})  # fmt: skip
    (tmp_path / "lake").mkdir()
    pq.write_table(table.slice(0, 4), tmp_path / "lake" / "part-0.parquet")
    pq.write_table(table.slice(4), tmp_path / "lake" / "part-1.parquet")
    report = ingest("text", [str(tmp_path / "lake")], tmp_path / "c.parquet")
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [(r["prompt"], r["raw"], r["subset"], r["count"], r["ref"]) for r in rows] == [
        ("white dog", "White Dog", "lake", 15, "part-0.parquet:1"),
        ("cat", "cat", "lake", 3, "part-0.parquet:3"),
        ("café", "café", "lake", 7, "part-1.parquet:3"),
    ]
    first, second = report.files
    assert (first.read, first.kept, first.merged, first.skipped) == (4, 2, 1, 1)
    assert (second.read, second.kept, second.merged, second.skipped) == (3, 1, 0, 2)
    assert set(second.skips) == {"empty prompt", "count is not a positive whole number"}
    pq.write_table(pa.table({"prompt": ["a"], "hits": ["many"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="not integers"):
        ingest(
            "text",
            [str(tmp_path / "bad.parquet")],
            tmp_path / "d.parquet",
            engine=EngineOptions(count_column="hits"),
        )


def test_count_column_in_csv_and_count_field_in_jsonl(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("prompt,hits\nDog,3\ndog,2\ncat,x\n", encoding="utf-8")
    ingest(
        "text",
        [str(tmp_path / "c.csv")],
        tmp_path / "a.parquet",
        engine=EngineOptions("duckdb", count_column="hits"),
    )
    assert [(r["prompt"], r["count"]) for r in pq.read_table(tmp_path / "a.parquet").to_pylist()] == [
        ("dog", 5)
    ]
    (tmp_path / "j.jsonl").write_text(
        '{"p": "Dog", "n": 4}\n{"p": "cat", "n": 1}\n{"p": "dog"}\n', encoding="utf-8"
    )
    ingest("text", [str(tmp_path / "j.jsonl")], tmp_path / "b.parquet", ReadOptions(field="p"),
           EngineOptions("duckdb", count_field="n"))  # fmt: skip
    rows = pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert [(r["prompt"], r["count"]) for r in rows] == [("dog", 4), ("cat", 1)]
    assert read_manifest(tmp_path / "b.parquet")[0]["options"]["count"] == "n"


def test_memory_limit_is_parsed_and_ranged() -> None:
    assert memory_limit_bytes("2GiB") == 2 << 30
    assert memory_limit_bytes("500MB") == 500_000_000
    assert memory_limit_bytes("512m") == 512 << 20
    assert 128 << 20 <= memory_limit_bytes(None) <= 8 << 30
    for bad in ("lots", "0", "1KB", "95%", "10 PB"):
        with pytest.raises(OptionError):
            memory_limit_bytes(bad)


def test_failure_leaves_corpus_and_folder_clean(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("dog\n", encoding="utf-8")
    ingest("text", [str(tmp_path / "good.txt")], tmp_path / "c.parquet", engine=DUCK)
    before = (tmp_path / "c.parquet").read_bytes()
    (tmp_path / ".c.parquet.engine-stale").mkdir()  # left by a killed ingest
    (tmp_path / "bad.txt.gz").write_bytes(gzip.compress(b"cat\n\xff\xfe broken\n"))
    with pytest.raises(InputError, match="bad.txt.gz"):
        ingest(
            "text",
            [str(tmp_path / "bad.txt.gz")],
            tmp_path / "c.parquet",
            engine=EngineOptions(memory_limit="256MiB"),
        )
    assert (tmp_path / "c.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.txt.gz",
        "c.manifest.json",
        "c.parquet",
        "good.txt",
    ]


def test_cli_engine_options(tmp_path: Path) -> None:
    (tmp_path / "log.txt.gz").write_bytes(gzip.compress(b"Dog\ndog\ncat\n"))
    runner = CliRunner()
    out = str(tmp_path / "c.parquet")
    result = runner.invoke(
        app, ["ingest", "text", str(tmp_path / "*.gz"), "--out", out, "--memory-limit", "1GiB"]
    )
    assert result.exit_code == 0, result.output
    assert "read 3, kept 2, merged 1 duplicates, skipped 0" in result.output
    result = runner.invoke(
        app, ["ingest", "text", str(tmp_path / "log.txt.gz"), "--out", out, "--memory-limit", "lots"]
    )
    assert result.exit_code == 2
    result = runner.invoke(app, ["ingest", "text", str(tmp_path / "none*.gz"), "--out", out])
    assert result.exit_code == 1 and "no file matches" in result.output
    assert json.loads((tmp_path / "c.manifest.json").read_text())["inputs"][0]["input"].endswith("log.txt.gz")


def test_which_inputs_go_to_the_engine(tmp_path: Path, monkeypatch) -> None:
    from anatomy.corpus import engine

    (tmp_path / "small.txt").write_text("dog\n", encoding="utf-8")
    (tmp_path / "list.json").write_text('["dog"]', encoding="utf-8")
    (tmp_path / "log.txt.gz").write_bytes(gzip.compress(b"dog\n"))
    auto = EngineOptions()
    assert engine.plan("text", [str(tmp_path / "small.txt")], "utf-8", auto) is None  # small: Python readers
    monkeypatch.setattr(engine, "ENGINE_MIN_BYTES", 1)
    assert [f.kind for f in engine.plan("text", [str(tmp_path / "small.txt")], "utf-8", auto)] == ["lines"]
    files = engine.plan("text", [str(tmp_path / "*.gz")], "utf-8", auto)
    assert [(f.name, f.subset, f.compressed) for f in files] == [("log.txt", "log", True)]
    assert engine.plan("text", [str(tmp_path / "list.json")], "utf-8", auto) is None
    assert engine.plan("lvis", [str(tmp_path / "small.txt")], "utf-8", auto) is None
    for inputs, encoding in (([str(tmp_path / "list.json"), str(tmp_path / "log.txt.gz")], "utf-8"),
                             ([str(tmp_path / "log.txt.gz")], "latin-1")):  # fmt: skip
        with pytest.raises(InputError, match="only the engine reads it"):
            engine.plan("text", inputs, encoding, auto)
    assert engine.plan("text", [str(tmp_path / "log.txt.gz")], "utf-8", EngineOptions("python")) is None
    with pytest.raises(OptionError):
        engine.plan("text", [str(tmp_path / "small.txt")], "utf-8", EngineOptions("spark"))

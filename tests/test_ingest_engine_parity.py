"""The DuckDB engine reads hostile CSV and JSON lines as the Python readers do (the reference): the same corpus,
the same per-file counts and skip reasons with their examples, the same refusal. Each case is a small file
read by both paths (test_ingest_engine_hostile.both)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ingest_engine_hostile import DUCK, ENGINES, both

from anatomy.corpus import engine_sql as sql
from anatomy.corpus.corpus import ingest
from anatomy.corpus.engine_ingest import _json_repr
from anatomy.corpus.engine_udf import csv_rows
from anatomy.corpus.records import SURROGATE_REASON
from anatomy.corpus.sources import ReadOptions
from anatomy.errors import InputError

duckdb = pytest.importorskip("duckdb")

WIDE = "row has {} fields, the header {} (an unquoted {!r} in a field? quote it)"


def same(tmp_path: Path, name: str, data: str | bytes, options: ReadOptions = ReadOptions()):
    """Both paths on `data` written to `name`: equal rows and manifests; the engine's (rows, manifest entry)."""
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    python, engine = both(tmp_path, name, options)
    assert engine == python
    return engine[0], engine[1][0]


def skips(entry: dict) -> dict[str, int]:
    return {reason: s["count"] for reason, s in entry["skips"].items()}


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_csv_rows_wider_than_the_header_are_counted_skips_never_cut(tmp_path: Path, delimiter: str) -> None:
    lines = ["id,prompt", "1,dog", "5,x,extra", '1, "dog, big"', "6,y,,", "7,z, \t", "10,w,e,f", "", "11",
             '12,"q ""r""",', "13,café"]  # fmt: skip
    text = "\n".join(lines).replace(",", delimiter) + "\n"
    name = "q.tsv" if delimiter == "\t" else "q.csv"
    rows, entry = same(tmp_path, name, text, ReadOptions(column="prompt"))
    assert [(r["raw"], r["ref"]) for r in rows] == [
        ("dog", f"{name}:2"), ("y", f"{name}:5"), ("z", f"{name}:6"), ('q "r"', f"{name}:10"),
        ("café", f"{name}:11"),
    ]  # fmt: skip
    # a space before a quote makes an unquoted field: its delimiter splits it (Python's csv), as in 5,x,extra
    assert entry["read"] == 9 and skips(entry) == {
        WIDE.format(3, 2, delimiter): 2,
        WIDE.format(4, 2, delimiter): 1,
        "row has fewer fields than the header": 1,
    }


def test_csv_space_before_a_quote_is_not_a_quoted_field(tmp_path: Path) -> None:
    rows, entry = same(tmp_path, "q.csv", 'id,prompt\n1,dog\n5,x,extra\n1, "dog, big"\n', ReadOptions())
    assert [r["raw"] for r in rows] == ["dog"]
    assert skips(entry) == {WIDE.format(3, 2, ","): 2}
    assert entry["skips"][WIDE.format(3, 2, ",")]["examples"] == [
        "q.csv:3: 5,x,extra",
        'q.csv:4: 1, "dog, big"',
    ]
    rows, _ = same(tmp_path, "s.csv", 'id,prompt\n1, "dog"\n2,a"b\n', ReadOptions())
    assert [r["raw"] for r in rows] == [' "dog"', 'a"b']


def test_csv_with_counts_crlf_quoted_line_breaks_and_blank_lines(tmp_path: Path) -> None:
    text = ' id , prompt ,n\r\n1,dog,2\r\n2,"a,b",x\r\n\r\n3,c\r\n4,dog,3,\r\n5,cat,1,9\r\n'
    rows, entry = same(tmp_path, "c.csv", text, ReadOptions(count="n"))
    assert [(r["prompt"], r["count"], r["ref"]) for r in rows] == [("dog", 5, "c.csv:2")]
    assert skips(entry) == {sql.COUNT_REASON: 1, "row has fewer fields than the header": 1,
                            WIDE.format(4, 3, ","): 1}  # fmt: skip
    # a quoted field spanning lines: the Python reader reads the file (it numbers the record's last line)
    rows, entry = same(tmp_path, "m.csv", 'id,prompt\n1,dog\n8,"q\nr",\n2,cat\n', ReadOptions())
    assert [r["raw"] for r in rows] == ["dog", "q\nr", "cat"] and entry["read"] == 3


def test_malformed_csv_is_the_same_refusal(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text('id,prompt\n1,dog\n8,"q"r\n', encoding="utf-8")
    messages = []
    for engine in ENGINES.values():
        with pytest.raises(InputError) as err:
            ingest("text", [str(tmp_path / "bad.csv")], tmp_path / "c.parquet", engine=engine)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "malformed CSV at line 3" in messages[0]


def test_csv_rows_read_per_line_as_pythons_csv() -> None:
    lines = ['1,"a, b",c', '2,"x""y"', '3,"open', "4,ok", '5,"a"b']
    assert csv_rows(lines, ",") == [["1", "a, b", "c"], ["2", 'x"y'], None, ["4", "ok"], None]


JSONL = [
    '{"prompt":"dup1","prompt":"dup2"}',  # Python keeps the last
    '{"prompt":"a",}',  # invalid for Python (DuckDB reads trailing commas)
    "\t",  # blank to str.strip(): no record
    "\u00a0 \u3000",
    '{"prompt":18446744073709551616}',  # an int, not a float
    '{"prompt":[18446744073709551616, 1.5E+2]}',
    '{"prompt":NaN}',
    '{"pr\\u006fmpt":"esc1","prompt":"esc2"}',  # an escaped key repeating the field
    '{"prompt":"caf\\u00e9 \\ud83d\\ude00"}',
    '{"prompt":[1,]}',
    '{"prompt":"ok", "meta": {"a": 1, "a": 2}}',
    '{"prompt":"x"}\x0b',
    '{"prompt":"a", "n": [1, 2,]}',
    "[1, 2]",
    '{"text":"no prompt"}',
    '{"prompt": "  "}',
]


def test_jsonl_lines_as_pythons_json_module_reads_them(tmp_path: Path) -> None:
    rows, entry = same(tmp_path, "j.jsonl", "\n".join(JSONL) + "\n", ReadOptions(field="prompt"))
    assert [r["raw"] for r in rows] == ["dup2", "esc2", "café 😀", "ok"]
    assert skips(entry) == {
        "invalid JSON line": 4,
        "not a string (int)": 1,
        "not a string (list)": 1,
        "not a string (float)": 1,
        "line is not a JSON object": 1,
        "no field 'prompt'": 1,
        "empty prompt": 1,
    }
    assert entry["read"] == len(JSONL) - 2
    assert entry["skips"]["not a string (int)"]["examples"] == ["j.jsonl:5: 18446744073709551616"]


def test_jsonl_counts_on_lines_python_judges(tmp_path: Path) -> None:
    lines = ['{"p":"a","n":2,"n":3}', '{"p":"b","n":2,}', '{"p":"c","n":18446744073709551616}',
             '{"p":"d","n":"4"}', '{"p":"e","n":NaN}', '{"p":"\\udc80","n":1}']  # fmt: skip
    rows, entry = same(tmp_path, "c.jsonl", "\n".join(lines) + "\n", ReadOptions(field="p", count="n"))
    assert [(r["raw"], r["count"]) for r in rows] == [("a", 3), ("d", 4)]
    assert skips(entry)[sql.COUNT_REASON] == 2


def test_huge_numbers_and_deep_nesting_are_counted_skips_not_crashes(tmp_path: Path) -> None:
    lines = ['{"prompt":' + "9" * 5000 + "}", '{"prompt":' + "[" * 2000 + "]" * 2000 + "}",
             '{"prompt":"ok","m":' + "[" * 2000 + "]" * 2000 + "}", '{"prompt":' + "[" * 300 + "]" * 300 + "}",
             '{"prompt":"fine"}']  # fmt: skip
    rows, entry = same(tmp_path, "h.jsonl", "\n".join(lines) + "\n", ReadOptions(field="prompt"))
    assert [r["raw"] for r in rows] == ["fine"]
    assert skips(entry) == {"invalid JSON line": 3, "not a string (list)": 1}
    assert _json_repr("9" * 5000) == "9" * 80 and _json_repr("[" * 5000 + "]" * 5000) == "[" * 80


@pytest.mark.parametrize("field", ['a"b', "x/y", "t~0", "a.b", "$c", "é"])
def test_any_field_name_is_read(tmp_path: Path, field: str) -> None:
    import json

    lines = [json.dumps({field: "dog", "other": 1}), json.dumps({"other": 2}), json.dumps({field: 3})]
    rows, entry = same(tmp_path, "f.jsonl", "\n".join(lines) + "\n", ReadOptions(field=field))
    assert [r["raw"] for r in rows] == ["dog"]
    assert skips(entry) == {f"no field {field!r}": 1, "not a string (int)": 1}


def test_a_lone_surrogate_is_a_counted_skip(tmp_path: Path) -> None:
    data = '{"prompt":"\\udc80x"}\n{"prompt":"ok"}\n'
    (tmp_path / "s.jsonl").write_text(data, encoding="utf-8")
    out = tmp_path / "duck.parquet"
    report = ingest("text", [str(tmp_path / "s.jsonl")], out, ReadOptions(), DUCK)
    stats = report.files[0]
    assert (stats.read, stats.kept, stats.skipped) == (2, 1, 1)
    assert list(stats.skips) == [SURROGATE_REASON]
    try:
        same(tmp_path, "s.jsonl", data)
    except UnicodeEncodeError:  # the Python reader's own fix is pending
        pytest.skip("the Python reader does not count lone surrogates yet")


def test_py_space_is_what_str_strip_removes() -> None:
    con = duckdb.connect()
    chars = [chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF]
    found = con.execute(
        f"SELECT list(c) FILTER (WHERE regexp_full_match(c, {sql.quote(sql.PY_SPACE)})) FROM unnest($c) t(c)",
        {"c": chars},
    ).fetchall()[0][0]
    assert sorted(found) == [c for c in chars if c.isspace()]

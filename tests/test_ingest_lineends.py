"""Line ends and field counts: every line-end convention splits lines (a CR-only export is not one prompt),
and a CSV row wider than its header is a counted skip naming its line, never a prompt cut at the delimiter."""

from __future__ import annotations

import pytest

from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, get_reader, lines

PROMPTS = ["a cat", "the dog", "a red car", "two birds"]


def _records(path, source="text", **options):
    return list(get_reader(source)(SourceFile(str(path)), ReadOptions(**options)))


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("final", [True, False], ids=["final-eol", "no-final-eol"])
def test_every_line_end_convention_gives_the_same_prompts(tmp_path, eol, final):
    path = tmp_path / "p.txt"
    path.write_bytes((eol.join(PROMPTS) + (eol if final else "")).encode())
    records = _records(path)
    assert [r.raw for r in records] == PROMPTS
    assert [r.ref for r in records] == [f"p.txt:{i}" for i in range(1, 5)]


def test_mixed_line_ends_and_separators_inside_a_line(tmp_path):
    # \r\n is one end (not an empty line between); form feed, NEL and U+2028 are not line ends
    path = tmp_path / "p.txt"
    path.write_bytes("a cat\r\nthe\x0cdog\rx\u2028y\u0085z\n\nlast".encode())
    assert [r.raw for r in _records(path)] == ["a cat", "the\x0cdog", "x\u2028y\u0085z", "", "last"]


def test_lines_helper_numbers_like_an_editor():
    assert list(lines("")) == []
    assert list(lines("a")) == [(1, "a")]
    assert list(lines("a\r\rb\r\n")) == [(1, "a"), (2, ""), (3, "b")]


def test_cr_only_file_ingests_one_prompt_per_line(tmp_path):
    path = tmp_path / "mac.txt"
    path.write_bytes(b"a cat\rthe dog\ra cat\r")
    report = ingest("text", [str(path)], tmp_path / "c.parquet")
    frame = load_corpus(tmp_path / "c.parquet")
    assert sorted(frame["prompt"]) == ["a cat", "the dog"]
    assert report.files[0].read == 3 and report.files[0].merged == 1


def test_cr_only_jsonl(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "a cat"}\r{"prompt": "the dog"}\r')
    assert [r.raw for r in _records(path)] == ["a cat", "the dog"]


def test_unquoted_comma_is_a_counted_skip_with_its_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt\na cat\na red, white car\n"a red, white bus"\nthe dog,\n', encoding="utf-8")
    records = _records(path)
    kept = [r.raw for r in records if isinstance(r, PromptRecord)]
    skipped = [r for r in records if isinstance(r, Skipped)]
    # the quoted one is kept whole; a trailing empty field cuts nothing; the unquoted one is never "a red"
    assert kept == ["a cat", "a red, white bus", "the dog"]
    assert len(skipped) == 1 and skipped[0].ref == "p.csv:3"
    assert "2 fields" in skipped[0].reason and "header 1" in skipped[0].reason
    report = ingest("text", [str(path)], tmp_path / "c.parquet")
    stats = report.files[0]
    assert stats.read == 4 and stats.skipped == 1
    assert "a red" not in set(load_corpus(tmp_path / "c.parquet")["prompt"])
    (reason,) = stats.skips
    assert stats.skips[reason]["count"] == 1


def test_row_wider_than_the_header_is_skipped_in_every_column(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("id\tprompt\n1\ta cat\n2\tthe dog\textra\n3\ta bird\n", encoding="utf-8")
    records = _records(path, column="prompt")
    assert [r.raw for r in records if isinstance(r, PromptRecord)] == ["a cat", "a bird"]
    (skip,) = [r for r in records if isinstance(r, Skipped)]
    assert skip.ref == "p.tsv:3" and "3 fields" in skip.reason


def test_refcoco_csv_wider_than_its_header(tmp_path):
    path = tmp_path / "refs.csv"
    path.write_text("ref_id,sent\n1,the man on the left\n2,a red, white car\n", encoding="utf-8")
    records = _records(path, source="refcoco")
    assert [r.raw for r in records if isinstance(r, PromptRecord)] == ["the man on the left"]
    assert [r.ref for r in records if isinstance(r, Skipped)] == ["refs.csv:3"]


def test_cr_only_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"prompt\ra cat\rthe dog\r")
    assert [r.raw for r in _records(path)] == ["a cat", "the dog"]

"""Plain prompt files: .txt (one prompt per line), .csv/.tsv (--column), .jsonl (--field), a JSON list.

Logs: a repeated line counts each time; `--count-column`/`--count-field` (ReadOptions.count) reads a request
count per CSV row or JSON line, `--time-column`/`--time-field` (ReadOptions.time) a timestamp kept by day
(anatomy.corpus.traffic); a record whose count or timestamp cannot be read is a counted skip.

'-' reads stdin: as JSON lines when --field is given, CSV when --column is, else one prompt per line. The
subset is the file name without its extension ("stdin" for stdin). A .json file may hold a list of strings
or a list of lists of strings (the YOLO-World class-text form: a class name and its synonyms).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, csv_table, describe, lines, load_json, text_record
from anatomy.corpus.traffic import parse_count, parse_day
from anatomy.errors import InputError

LINE_SUFFIXES = {".txt", ".text", ".lst", ".list", ""}
DEFAULT_FIELDS = ("prompt", "text", "caption", "sent")  # tried in order when --column/--field is not given


def read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]:
    suffix = "" if src.is_stdin else Path(src.name).suffix.lower()
    subset = "stdin" if src.is_stdin else Path(src.name).stem
    if src.is_stdin:
        kind = "jsonl" if options.field else "csv" if options.column else "lines"
    elif suffix in LINE_SUFFIXES:
        kind = "lines"
    elif suffix in (".csv", ".tsv"):
        kind = "csv"
    elif suffix in (".jsonl", ".ndjson"):
        kind = "jsonl"
    elif suffix == ".json":
        kind = "json"
    else:
        raise InputError(
            f"{src.spec}: the text source reads .txt, .csv, .tsv, .jsonl or .json, not {suffix}",
            "rename a one-prompt-per-line file to .txt, or pick the matching source (lvis, refcoco, saco, rf100vl)",
        )
    if kind == "json":
        yield from _read_json(src, options, subset)
        return
    text = src.read_text(options.encoding)
    if kind == "lines":
        yield from _read_lines(src, text, subset)
    elif kind == "csv":
        yield from _read_csv(src, text, options, subset, "\t" if suffix == ".tsv" else ",")
    else:
        yield from _read_jsonl(src, text, options, subset)


def _read_lines(src: SourceFile, text: str, subset: str) -> Iterator[PromptRecord | Skipped]:
    for number, line in lines(text):
        yield PromptRecord(line, subset, f"{src.name}:{number}")


def _pick(src: SourceFile, found: list[str], given: str | None, flag: str) -> str:
    if given is not None:
        if given not in found:
            raise InputError(
                f"{src.spec}: no {flag.strip('-')} {given!r}; found {found[:20]}", f"pass {flag} NAME"
            )
        return given
    for name in DEFAULT_FIELDS:
        if name in found:
            return name
    if len(found) == 1:
        return found[0]
    raise InputError(
        f"{src.spec}: which {flag.strip('-')} holds the prompts? found {found[:20]}", f"pass {flag} NAME"
    )


def _read_csv(src: SourceFile, text: str, options: ReadOptions, subset: str, delimiter: str):
    header, rows = csv_table(src, text, delimiter)
    if not header:
        raise InputError(f"{src.spec}: empty CSV, expected a header row naming the columns")
    at = header.index(_pick(src, header, options.column, "--column"))
    count_at = header.index(_pick(src, header, options.count, "--count-column")) if options.count else None
    time_at = header.index(_pick(src, header, options.time, "--time-column")) if options.time else None
    need = max(i for i in (at, count_at, time_at) if i is not None)
    for item in rows:
        if isinstance(item, Skipped):
            yield item
            continue
        where, row = item
        if len(row) <= need:
            yield Skipped("row has fewer fields than the header", where, delimiter.join(row)[:80])
        else:
            yield _traffic_record(row[at], subset, where, row, count_at, time_at)


def _traffic_record(raw: object, subset: str, where: str, row, count_at, time_at) -> PromptRecord | Skipped:
    """A record with its request count and day (anatomy.corpus.traffic) read from `row[count_at]`/`row[time_at]`."""
    record = text_record(raw, subset, where)
    if isinstance(record, Skipped) or (count_at is None and time_at is None):
        return record
    count, day = 1, None
    if count_at is not None:
        parsed = parse_count(row[count_at])
        if parsed is None:
            return Skipped("count is not a positive whole number", where, repr(row[count_at])[:80])
        count = parsed
    if time_at is not None:
        day = parse_day(row[time_at])
        if day is None:
            return Skipped("unreadable timestamp", where, repr(row[time_at])[:80])
    return PromptRecord(record.raw, subset, where, count=count, day=day)


def _read_jsonl(src: SourceFile, text: str, options: ReadOptions, subset: str):
    field = options.field
    for number, line in lines(text):
        if not line.strip():
            continue  # blank lines separate nothing in JSON lines; they are not records
        where = f"{src.name}:{number}"
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError, as is an over-long int
            column = f", column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
            yield Skipped("invalid JSON line", f"{where}{column}", line[:80])
            continue
        if not isinstance(obj, dict):
            yield Skipped("line is not a JSON object", where, line[:80])
            continue
        if field is None:
            field = _pick(src, sorted(map(str, obj)), None, "--field")
        missing = [f for f in (field, options.count, options.time) if f is not None and f not in obj]
        if missing:
            yield Skipped(f"no field {missing[0]!r}", where, line[:80])
        else:
            yield _traffic_record(obj[field], subset, where, obj, options.count, options.time)


def _read_json(src: SourceFile, options: ReadOptions, subset: str):
    data = load_json(src, options)
    if not isinstance(data, list):
        raise InputError(
            f"{src.spec}: expected a JSON list of prompts (strings, or lists of strings); found {describe(data)}",
            "structured annotation files have their own sources: lvis, saco, rf100vl",
        )
    for i, item in enumerate(data):
        if isinstance(item, list):
            for j, value in enumerate(item):
                yield text_record(value, subset, f"{src.name}:[{i}][{j}]")
        else:
            yield text_record(item, subset, f"{src.name}:[{i}]")

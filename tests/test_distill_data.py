"""The teacher cache: computed once, equal to the teacher's outputs, hash-checked, rebuilt or refused when
corrupted; and the seeded held-out split."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_distill_train import make_tiny_setup

from anatomy.distill import data
from anatomy.errors import InputError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from anatomy.encoders.registry import load

    tiny = make_tiny_setup(tmp_path_factory.mktemp("tiny"))
    teacher = load(tiny["teacher"], device="cpu")
    prompts, sha = data.load_prompts(tiny["corpus"])
    return teacher, prompts[:40], sha


class Counting:
    """A teacher wrapper that counts how often the teacher runs."""

    def __init__(self, teacher):
        self.inner, self.calls = teacher, 0
        self.name, self.tokenizer = teacher.name, teacher.tokenizer

    def encode_ids(self, ids, valid):
        self.calls += 1
        return self.inner.encode_ids(ids, valid)


def test_cache_equals_the_teacher_and_is_computed_once(setup, tmp_path):
    teacher, prompts, sha = setup
    counting = Counting(teacher)
    cache = data.teacher_cache(counting, prompts, 12, tmp_path, corpus_sha256=sha)
    assert counting.calls == 1 and cache.targets.dtype == np.float16 and cache.targets.shape == (40, 12, 24)
    direct = teacher.encode(prompts, context_length=12)
    np.testing.assert_array_equal(cache.valid, direct.mask.numpy())
    expected = direct.tokens.numpy() * direct.mask.numpy()[..., None]
    np.testing.assert_allclose(cache.targets.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
    assert cache.words(0) == teacher.tokenizer.encode(prompts[0].split())
    again = data.teacher_cache(counting, prompts, 12, tmp_path, corpus_sha256=sha)
    assert counting.calls == 1, "a valid cache must not run the teacher again"
    np.testing.assert_array_equal(again.targets, cache.targets)
    other_context = data.teacher_cache(counting, prompts, 8, tmp_path)
    assert counting.calls == 2 and other_context.context == 8  # the key includes the context


def test_corrupted_cache_is_rebuilt_or_refused(setup, tmp_path, caplog):
    teacher, prompts, _ = setup
    good = data.teacher_cache(teacher, prompts, 12, tmp_path)
    arrays, meta = data.cache_paths(tmp_path, good.meta["key"])
    blob = bytearray(arrays.read_bytes())
    blob[-7] ^= 0xFF  # flip bits inside the targets
    arrays.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="corrupted: .*does not match the sha256") as info:
        data.teacher_cache(teacher, prompts, 12, tmp_path, on_corrupt="refuse")
    assert "delete" in info.value.hint
    with caplog.at_level(logging.WARNING, logger="anatomy.distill.data"):
        rebuilt = data.teacher_cache(teacher, prompts, 12, tmp_path)
    assert "rebuilding" in caplog.text
    np.testing.assert_array_equal(rebuilt.targets, good.targets)
    meta.write_text("{not json", encoding="utf-8")  # a torn sidecar is not trusted either
    with pytest.raises(InputError, match="unreadable"):
        data.teacher_cache(teacher, prompts, 12, tmp_path, on_corrupt="refuse")
    meta.unlink()
    with pytest.raises(InputError, match="missing"):
        data.teacher_cache(teacher, prompts, 12, tmp_path, on_corrupt="refuse")


def test_heldout_split_is_seeded_and_disjoint():
    train, held = data.split_heldout(100, 10, seed=3)
    again_train, again_held = data.split_heldout(100, 10, seed=3)
    np.testing.assert_array_equal(held, again_held)
    np.testing.assert_array_equal(train, again_train)
    assert len(held) == 10 and len(train) == 90 and not set(held) & set(train)
    assert set(held) != set(data.split_heldout(100, 10, seed=4)[1])
    with pytest.raises(InputError):
        data.split_heldout(5, 5, seed=0)


def test_shuffled_batch_keeps_tokens_and_validity(setup, tmp_path):
    teacher, prompts, _ = setup
    cache = data.teacher_cache(teacher, prompts, 16, tmp_path)
    rows = np.arange(10)
    batch = data.make_batch(cache, rows, "cpu", np.random.default_rng(0))
    assert batch.shuffled_ids.shape == batch.ids.shape
    for r in range(10):  # same multiset of ids, same length: only the word order changed
        n = int(batch.valid[r].sum())
        assert int(batch.shuffled_valid[r].sum()) == n
        assert sorted(batch.ids[r, :n].tolist()) == sorted(batch.shuffled_ids[r, :n].tolist())

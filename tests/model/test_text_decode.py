"""Repetition blocking in text decoding (``no_repeat_ngram``)."""

from __future__ import annotations

import pytest
import torch

from unif2ace.errors import UserError
from unif2ace.model.text_decode import generate_text, repeat_bans


def test_repeat_bans_complete_only_seen_ngrams():
    assert repeat_bans([1, 2, 3, 1, 2], 3) == {3}
    assert repeat_bans([1, 2, 3, 1, 2, 4, 1, 2], 3) == {3, 4}
    assert repeat_bans([1, 2, 3, 4], 3) == set()
    assert repeat_bans([5, 6, 5], 1) == {5, 6}
    assert repeat_bans([7], 3) == set()


def _has_repeat(row: list[int], n: int) -> bool:
    grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
    return len(grams) != len(set(grams))


def test_decoding_never_repeats_an_ngram_and_cache_agrees(tiny_model, layout):
    with torch.no_grad():  # a model that loops: strong bias to a few text tokens
        tiny_model.lm_head.bias.zero_()
        tiny_model.lm_head.bias[5:8] = 8.0
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, layout.codebook_size, (2, 8), generator=g)
    kw = dict(max_new_tokens=30)
    free = generate_text(tiny_model, layout, codes, [[1], [2, 3]], **kw)
    assert any(_has_repeat(r, 2) for r in free.tokens)  # it loops without the rule
    for n in (2, 3):
        runs = [
            generate_text(tiny_model, layout, codes, [[1], [2, 3]], no_repeat_ngram=n,
                          use_cache=c, **kw).tokens
            for c in (True, False)
        ]  # fmt: skip
        assert runs[0] == runs[1]
        assert not any(_has_repeat(r, n) for r in runs[0])
    with pytest.raises(UserError, match="no_repeat_ngram"):
        generate_text(tiny_model, layout, codes, [[1], [2]], no_repeat_ngram=-1)

"""Omni-attention mask, rotary positions and padding invariance."""

from __future__ import annotations

import torch

from unif2ace.model.attention import omni_mask, positions_from_modality, reference_omni_mask
from unif2ace.vocab import Modality, Task


def _random_modality(seed: int, B: int = 4, S: int = 14) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        lead = int(torch.randint(0, 4, (1,), generator=g))
        text1 = int(torch.randint(0, 4, (1,), generator=g))
        img = int(torch.randint(0, 6, (1,), generator=g))
        rest = S - lead - text1 - img
        rows.append([0] * lead + [1] * text1 + [2] * img + [1] * rest)
    return torch.tensor(rows)


def test_mask_matches_reference():
    for seed in range(5):
        mod = _random_modality(seed)
        assert torch.equal(omni_mask(mod), reference_omni_mask(mod))


def test_mask_rows_after_cache_are_rows_of_full_mask():
    mod = _random_modality(7)
    full = omni_mask(mod)
    for start in (0, 3, 9):
        assert torch.equal(omni_mask(mod, start), full[:, :, start:])


def test_mask_properties():
    mod = torch.tensor([[0, 1, 1, 2, 2, 2, 1]])
    m = omni_mask(mod)[0, 0]
    assert not m[1:, 0].any()  # pad key invisible to every other row
    assert m[3, 5] and m[5, 3]  # bidirectional inside the image
    assert not m[1, 3] and not m[2, 3]  # text before the image never sees it
    assert m[6, :].tolist() == [False] + [True] * 6  # text after image: causal


def test_positions_skip_pads():
    mod = torch.tensor([[0, 0, 1, 1, 2], [1, 1, 2, 0, 1]])
    assert positions_from_modality(mod).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 3]]


def test_pad_rows_finite_and_left_padding_invariant(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    out = tiny_model(ids, mod, task).logits_BTV
    assert out.isfinite().all()
    # Row 2 is row 0's layout shifted by 2 pads; give it row 0's real tokens.
    ids2 = ids.clone()
    ids2[2, 2:] = ids[0, :-2]
    mod2 = mod.clone()
    mod2[2, 2:] = mod[0, :-2]
    single = tiny_model(ids[:1, :-2], mod[:1, :-2], task[:1]).logits_BTV
    padded = tiny_model(ids2, mod2, task).logits_BTV
    torch.testing.assert_close(padded[2, 2:], single[0], rtol=1e-5, atol=1e-5)
    assert int(task[2]) == int(Task.T2I) and int(mod2[2, 0]) == int(Modality.PAD)


def test_math_and_sdpa_attention_agree(layout, make_batch):
    from unif2ace.model.config import model_preset
    from unif2ace.model.transformer import build_model

    ids, mod, task = make_batch(layout)
    outs = []
    for impl in ("math", "sdpa"):
        torch.manual_seed(0)
        model = build_model(model_preset("tiny", attn_impl=impl), layout)
        outs.append(model(ids, mod, task).logits_BTV)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)

"""Prompt cache (image generation) and KV cache (text decoding) equal the uncached paths."""

from __future__ import annotations

import pytest
import torch

from unif2ace.errors import UserError
from unif2ace.model.denoiser import make_image_denoiser
from unif2ace.model.text_decode import answer_logprob, generate_text, sample_next


def _codes(layout, R: int, N: int, seed: int, ratio: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, layout.codebook_size, (R, N), generator=g)
    masked = torch.rand(R, N, generator=g) < ratio
    return torch.where(masked, torch.full_like(codes, layout.codebook_size), codes)


def _images_with_open_resamplers(model, layout, n: int, seed: int):
    """(codes_N8, encoder features) of n random images, after giving the sequence experts'
    resamplers non-zero output weights so that the encoder features change the result."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            for ex in layer.seq_moe.experts.values():
                torch.nn.init.normal_(ex.resampler.o_proj.weight, std=0.1, generator=g)
    codes = torch.randint(0, layout.codebook_size, (n, 8), generator=g)
    return codes, model.encode_images(torch.rand(n, 3, 32, 32, generator=g))


def test_prompt_cache_equals_uncached(tiny_model, layout):
    prompts = [[3, 4, 5, 6], [7], [8, 9]]
    kw = dict(with_uncond=True)
    cached = make_image_denoiser(tiny_model, layout, prompts, use_cache=True, **kw)
    plain = make_image_denoiser(tiny_model, layout, prompts, use_cache=False, **kw)
    for step, ratio in enumerate((0.9, 0.5, 0.1)):
        codes = _codes(layout, 6, 9, step, ratio)
        noise = torch.full((6,), ratio)
        a, b = cached(codes, noise), plain(codes, noise)
        assert a.shape == (6, 9, layout.codebook_size)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert torch.equal(a.argmax(-1), b.argmax(-1))
    # Conditional half only (guidance off) reuses the same cache rows.
    codes = _codes(layout, 3, 9, 5)
    torch.testing.assert_close(cached(codes, None), plain(codes, None), rtol=1e-5, atol=1e-5)


def test_prompt_cache_under_bf16_autocast(tiny_model, layout):
    prompts = torch.tensor([[3, 4, 5], [layout.pad_id, 7, 8]])
    cached = make_image_denoiser(tiny_model, layout, prompts, use_cache=True)
    plain = make_image_denoiser(tiny_model, layout, prompts, use_cache=False)
    codes = _codes(layout, 2, 9, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = cached(codes, torch.full((2,), 0.5)), plain(codes, torch.full((2,), 0.5))
    torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2)


def test_kv_cache_greedy_equals_uncached(tiny_model, layout):
    codes, feats = _images_with_open_resamplers(tiny_model, layout, 3, seed=0)
    questions = [[1, 2, 3], [], [4, 5]]
    kw = dict(max_new_tokens=10, return_logits=True, encoder_feats=feats)
    a = generate_text(tiny_model, layout, codes, questions, use_cache=True, **kw)
    b = generate_text(tiny_model, layout, codes, questions, use_cache=False, **kw)
    assert a.tokens == b.tokens and a.finished == b.finished
    torch.testing.assert_close(a.logits_BSV, b.logits_BSV, rtol=1e-4, atol=1e-4)
    # Each row decodes as it would alone (left padding changes nothing).
    kw["encoder_feats"] = {k: v[1:2] for k, v in feats.items()}
    solo = generate_text(tiny_model, layout, codes[1:2], questions[1:2], **kw)
    assert solo.tokens[0] == a.tokens[1]


def test_kv_cache_sampling_equal_and_seeded(tiny_model, layout):
    codes = torch.randint(
        0, layout.codebook_size, (2, 8), generator=torch.Generator().manual_seed(1)
    )
    kw = dict(max_new_tokens=5, temperature=1.0, top_k=20, top_p=0.9)
    runs = [
        generate_text(
            tiny_model,
            layout,
            codes,
            [[1], [2]],
            use_cache=c,
            generator=torch.Generator().manual_seed(7),
            **kw,
        ).tokens
        for c in (True, False, True)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert all(t < layout.text_vocab_size for row in runs[0] for t in row)


def test_sample_next_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert sample_next(logits).tolist() == [3]
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, 1.0, top_k=2, generator=g)) for _ in range(50)}
    assert draws <= {2, 3}
    # top_p: 3 has mass ~0.64 < 0.7, so {3, 2} is the smallest set reaching 0.7.
    draws = {int(sample_next(logits, 1.0, top_p=0.7, generator=g)) for _ in range(50)}
    assert draws <= {2, 3}


def test_kv_cache_projects_encoder_features_once(tiny_model, layout):
    """The resampler keys/values of fixed encoder features are computed at the prefill only,
    and the decoded tokens stay those of the uncached path."""
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, layout.codebook_size, (2, 8), generator=g)
    feats = tiny_model.encode_images(torch.rand(2, 3, 32, 32, generator=g))
    n = {"proj": 0, "fwd": 0}

    def counter(key):
        def hook(*_):
            n[key] += 1

        return hook

    hooks = [tiny_model.embed_tokens.register_forward_hook(counter("fwd"))]
    hooks += [
        ex.resampler.k_proj.register_forward_hook(counter("proj"))
        for layer in tiny_model.layers
        for name, ex in layer.seq_moe.experts.items()
        if name.startswith("mmu_")
    ]
    kw = dict(max_new_tokens=6, encoder_feats=feats)
    runs = {}
    try:
        for use_cache in (True, False):
            n["proj"] = n["fwd"] = 0
            out = generate_text(tiny_model, layout, codes, [[1, 2], [3]], use_cache=use_cache, **kw)
            runs[use_cache] = (out.tokens, n["proj"], n["fwd"])
    finally:
        for h in hooks:
            h.remove()
    (tok_c, proj_c, fwd_c), (tok_u, proj_u, fwd_u) = runs[True], runs[False]
    assert tok_c == tok_u
    per_forward = proj_u // fwd_u  # the uncached path projects them in every forward
    assert per_forward >= len(tiny_model.layers) and proj_u == per_forward * fwd_u
    assert fwd_c > 1 and proj_c == per_forward  # cached: the prefill only


def test_questions_about_one_image_share_its_prefix(tiny_model, layout):
    """``image_index``: each image's ``<|mmu|> <|soi|> image <|eoi|>`` runs once and its
    cache is copied to every question about it; the answers are those of one full sequence
    per question (the uncached path), encoder features and sequence routing included."""
    codes, feats = _images_with_open_resamplers(tiny_model, layout, 2, seed=4)
    index = [0, 1, 0, 0, 1]
    questions = [[1, 2, 3], [4], [5, 6], [], [7, 8, 9, 10]]
    kw = dict(max_new_tokens=8, return_logits=True, encoder_feats=feats, image_index=index)
    seen = []
    hook = tiny_model.embed_tokens.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    try:
        shared = generate_text(tiny_model, layout, codes, questions, use_cache=True, **kw)
    finally:
        hook.remove()
    assert seen[0] == (2, 8 + 3)  # the prefixes: one row per image, not per question
    full = generate_text(tiny_model, layout, codes, questions, use_cache=False, **kw)
    assert shared.tokens == full.tokens and shared.finished == full.finished
    torch.testing.assert_close(shared.logits_BSV, full.logits_BSV, rtol=1e-4, atol=1e-4)
    # and the uncached path with the image repeated per row is the same computation
    rep = {k: v[index] for k, v in feats.items()}
    kw.update(encoder_feats=rep, image_index=None)
    plain = generate_text(tiny_model, layout, codes[index], questions, use_cache=False, **kw)
    assert plain.tokens == full.tokens
    with pytest.raises(UserError, match="image index"):
        generate_text(tiny_model, layout, codes, questions, image_index=[0, 1])
    # answer scoring (VQAScore) shares the prefix the same way
    answers = [[11], [12, 13], [14], [15, 16, 17], [18]]
    one = answer_logprob(tiny_model, layout, codes, questions, answers, feats, image_index=index)
    per_row = answer_logprob(tiny_model, layout, codes[index], questions, answers, rep)
    torch.testing.assert_close(one, per_row, rtol=1e-4, atol=1e-4)
    # rows about some of the images only: only theirs run, the answers are the same
    seen.clear()
    hook = tiny_model.embed_tokens.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    try:
        some = answer_logprob(tiny_model, layout, codes, questions[1::3], answers[1::3], feats,
                              image_index=[1, 1])  # fmt: skip
    finally:
        hook.remove()
    assert seen[0][0] == 1  # one prefix row: image 1
    torch.testing.assert_close(some, one[1::3], rtol=1e-4, atol=1e-4)


def test_layer_cache_select_keeps_feature_entries_of_selected_rows_only():
    """Row-dependent sequence routing stores resampler keys/values per row set; a selection
    maps each set to the new rows and drops a set none of the selected rows belongs to."""
    from unif2ace.model.cache import LayerKV

    kv = LayerKV()
    k = torch.arange(3.0).view(3, 1, 1, 1)  # rows 0, 2, 3 of the prefix batch
    kv.feat_kv[("mmu_semantic", (0, 2, 3))] = (k, -k)
    kv.feat_kv[("mmu_face", (1,))] = (torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    out = kv.select(torch.tensor([3, 3, 0]))
    assert list(out.feat_kv) == [("mmu_semantic", (0, 1, 2))]
    k_new, v_new = out.feat_kv[("mmu_semantic", (0, 1, 2))]
    assert k_new.flatten().tolist() == [2.0, 2.0, 0.0] and torch.equal(v_new, -k_new)

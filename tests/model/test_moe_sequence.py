"""Sequence-level MoE: one decision per sequence, masks, and no leakage from generated parts."""

from __future__ import annotations

import torch

from unif2ace.model.moe_sequence import condition_mask, injection_mask
from unif2ace.vocab import Modality, Task


def test_condition_and_injection_masks():
    mod = torch.tensor([[0, 1, 1, 2, 2, 1], [1, 1, 2, 2, 1, 1]])
    task = torch.tensor([int(Task.T2I), int(Task.MMU)])
    assert condition_mask(mod, task).int().tolist() == [[0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0]]
    assert injection_mask(mod, task).int().tolist() == [[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]]


def test_top2_of_4_per_sequence(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    w = tiny_model(ids, mod, task).router.seq_weights_LBQ
    assert w.shape == (2, 3, 4)
    assert ((w > 0).sum(-1) == 2).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3))


def test_t2i_prompt_independent_of_image_and_noise(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    ids2 = ids.clone()
    img = mod == Modality.IMAGE
    ids2[img] = layout.mask_id  # every image token changed, noise level changed
    a = tiny_model(ids, mod, task).logits_BTV
    b = tiny_model(ids2, mod, task).logits_BTV
    prompt = (mod == Modality.TEXT) & (img.long().cumsum(1) == 0) & (task == Task.T2I)[:, None]
    torch.testing.assert_close(a[prompt], b[prompt], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(a[img], b[img])


def test_mmu_earlier_positions_independent_of_later_text(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    ids2 = ids.clone()
    ids2[1, -2:] = (ids[1, -2:] + 1) % layout.text_vocab_size
    a = tiny_model(ids, mod, task).logits_BTV
    b = tiny_model(ids2, mod, task).logits_BTV
    torch.testing.assert_close(a[1, :-2], b[1, :-2], rtol=1e-6, atol=1e-6)


def test_encoder_features_reach_mmu_experts(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    with torch.no_grad():  # resampler outputs start at zero; open them for this test
        for layer in tiny_model.layers:
            for ex in layer.seq_moe.experts.values():
                torch.nn.init.normal_(ex.resampler.o_proj.weight, std=0.1)
    g = torch.Generator().manual_seed(0)
    feats = tiny_model.encode_images(torch.rand(3, 3, 32, 32, generator=g))
    assert feats["semantic"].shape == (3, 17, 32)
    a = tiny_model(ids, mod, task, encoder_feats=feats)
    b = tiny_model(ids, mod, task)
    w = a.router.seq_weights_LBQ[:, 1]
    if (w[:, 2:] > 0).any():  # MMU row picked semantic or face in some layer
        assert not torch.allclose(a.logits_BTV[1], b.logits_BTV[1])
    # T2I rows never use image features.
    torch.testing.assert_close(a.logits_BTV[0], b.logits_BTV[0])

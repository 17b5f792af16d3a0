"""Sequence-level MoE: one decision per sequence, masks, and no leakage from generated parts."""

from __future__ import annotations

import torch

from unif2ace.model.moe_sequence import (
    condition_mask,
    injection_mask,
    off_copy_share,
    sequence_balance,
)
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


def test_sequence_balance_equals_its_definition():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(7, 4, generator=g).softmax(-1)
    task = torch.tensor([0, 1, 1, 0, 1, 1, 1])
    w, idx = probs.topk(2, -1)
    weights = torch.zeros_like(probs).scatter(1, idx, w)
    got = sequence_balance(probs, weights, task, top_k=2)
    for grp in (0, 1):
        rows = [b for b in range(7) if task[b] == grp]
        frac = [sum(int(q in idx[b].tolist()) for b in rows) / (2 * len(rows)) for q in range(4)]
        mean_p = [sum(float(probs[b, q]) for b in rows) / len(rows) for q in range(4)]
        want = 4 * sum(f * p for f, p in zip(frac, mean_p, strict=True))
        assert abs(float(got[grp]) - want) < 1e-6
    # Uniform probabilities with evenly spread choices: 1; a group without rows: 0.
    uni = torch.full((2, 4), 0.25)
    spread = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    assert sequence_balance(uni, spread, torch.tensor([1, 1]), 2).tolist() == [0.0, 1.0]


def test_copy_copy_router_learns_only_from_the_balance_loss(tiny_model, layout, make_batch):
    """The task loss gives a Copy + Copy router no gradient; the balance loss moves it off."""
    ids, mod, task = make_batch(layout)
    model = tiny_model.train()
    r = model.layers[0].seq_moe.router
    x_probe = {}

    def grab(mod_, args, out):
        x_probe["p"] = out

    handle = model.layers[0].seq_moe_layernorm.register_forward_hook(grab)
    model(ids, mod, task)
    handle.remove()
    cond = condition_mask(mod, task)
    pooled = (x_probe["p"][1] * cond[1, :, None]).sum(0) / cond[1].sum()
    with torch.no_grad():  # MMU logits 3, 3, 0, 0: Copy + Copy by a clear margin
        direction = pooled / pooled.norm() ** 2
        r[1] = 0.0
        r[1, 0] = 3 * direction
        r[1, 1] = 3 * direction
    out = model(ids, mod, task)
    assert out.router.seq_weights_LBQ[0, 1, 2:].eq(0).all()  # Copy + Copy
    out.logits_BTV[1].float().square().mean().backward()
    assert r.grad is None or r.grad[1].abs().max() == 0  # the task loss: no gradient
    model.zero_grad(set_to_none=True)
    out = model(ids, mod, task)
    assert out.seq_balance_loss > 1.5  # two experts hold every slot (balanced: 1)
    out.seq_balance_loss.backward()
    assert r.grad[1].abs().max() > 0
    p0 = model.layers[0].seq_moe.route_probs(x_probe["p"], cond, task)[1, :2].sum()
    with torch.no_grad():
        r -= 1e3 * r.grad
    p1 = model.layers[0].seq_moe.route_probs(x_probe["p"], cond, task)[1, :2].sum()
    assert p1 < p0  # the step moves probability from Copy to the gated experts


def test_no_balance_without_router_stats(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    assert tiny_model(ids, mod, task).seq_balance_loss > 0
    assert tiny_model(ids, mod, task, router_stats=False).seq_balance_loss == 0


def test_off_copy_share():
    # two layers, rows T2I, MMU, MMU; experts T2I: copy copy zero noise, MMU: copy copy sem face
    w = torch.tensor([
        [[0.5, 0.5, 0, 0], [1.0, 0, 0, 0], [0, 0.25, 0.75, 0]],
        [[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0.5, 0.5, 0, 0]],
    ])  # fmt: skip
    got = off_copy_share(w, torch.tensor([int(Task.T2I), int(Task.MMU), int(Task.MMU)]))
    assert got == {"t2i": 0.5, "mmu": (0 + 0.75 + 1.0 + 0) / 4}
    assert off_copy_share(w[:, :1], torch.tensor([int(Task.T2I)])) == {"t2i": 0.5}

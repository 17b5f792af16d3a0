"""Grouped token-level MoE: routing invariants, balance loss, upcycling, implementations."""

from __future__ import annotations

import torch

from unif2ace.model.config import model_preset
from unif2ace.model.moe_token import DenseFFN, TokenMoE
from unif2ace.model.transformer import build_model, upcycle_from_dense


def _inputs(seed: int = 0, B: int = 3, T: int = 7, D: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    group = torch.tensor([0, 1, 1])
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[2, :2] = False
    return x, group, valid


def test_every_token_reaches_k_experts_of_its_group():
    torch.manual_seed(0)
    moe = TokenMoE(16, 8, n_routed=5, top_k=3)
    x, group, valid = _inputs()
    x_N = x.reshape(-1, 16)[valid.reshape(-1)]
    group_N = group[:, None].expand(3, 7).reshape(-1)[valid.reshape(-1)]
    probs, w, idx = moe._route(x_N, group_N)
    assert idx.shape == (x_N.shape[0], 3)
    assert all(len(set(r)) == 3 for r in idx.tolist())  # K distinct experts
    torch.testing.assert_close(w.sum(-1), torch.ones(x_N.shape[0]))
    # The router of the token's own group decides: recompute with that group's gate only.
    for g in (0, 1):
        sel = group_N == g
        own = (x_N[sel] @ moe.gate[g].T).softmax(-1)
        torch.testing.assert_close(probs[sel], own, rtol=1e-5, atol=1e-6)
    _, stats = moe(x, group, valid)
    assert stats.tokens_G.tolist() == [7, 12]
    assert stats.counts_GR.sum(-1).tolist() == [7 * 3, 12 * 3]


def test_balance_loss_formula():
    torch.manual_seed(1)
    moe = TokenMoE(16, 8, n_routed=4, top_k=2)
    x, group, valid = _inputs(3)
    _, st = moe(x, group, valid)
    for g in (0, 1):
        f = st.counts_GR[g].float() / st.counts_GR[g].sum()
        expected = 4 * (f * st.mean_prob_GR[g]).sum()
        torch.testing.assert_close(st.balance_G[g], expected)
    torch.testing.assert_close(st.mean_prob_GR.sum(-1), torch.ones(2))
    # Uniform routing gives exactly 1: f_i = P_i = 1/R.
    uniform = TokenMoE(16, 8, n_routed=4, top_k=4)
    with torch.no_grad():
        uniform.gate.zero_()
    _, su = uniform(x, group, valid)
    torch.testing.assert_close(su.balance_G, torch.ones(2))


def test_pads_output_zero_and_are_not_counted():
    torch.manual_seed(0)
    moe = TokenMoE(16, 8, n_routed=4, top_k=2)
    x, group, valid = _inputs()
    y, st = moe(x, group, valid)
    assert (y[2, :2] == 0).all() and (y[2, 2:] != 0).any()
    assert int(st.tokens_G.sum()) == int(valid.sum())


def test_upcycled_moe_equals_dense_ffn():
    """Property: with every expert a copy of the dense FFN (output halved) and top-K weights
    renormalised to 1, shared(x) + Σ w_k E_k(x) = dense(x) for every token of both groups."""
    torch.manual_seed(0)
    dense = DenseFFN(16, 24)
    moe = TokenMoE(16, 24, n_routed=4, top_k=2)
    moe.upcycle_from_dense(dense)
    x, group, valid = _inputs()
    y, _ = moe(x, group, valid)
    ref, _ = dense(x)
    torch.testing.assert_close(y[valid], ref[valid], rtol=1e-5, atol=1e-6)


def test_upcycled_model_equals_dense_model(layout, make_batch):
    torch.manual_seed(0)
    cfg = model_preset("tiny", seq_moe=False)
    dense = build_model(
        model_preset("tiny", seq_moe=False, token_moe=False, ffn_hidden=cfg.expert_hidden), layout
    )
    moe = build_model(cfg, layout)
    upcycle_from_dense(moe, dense)
    ids, mod, task = make_batch(layout)
    a = dense(ids, mod, task).logits_BTV
    b = moe(ids, mod, task).logits_BTV
    real = mod != 0  # pad positions differ (the MoE skips them) and are never read
    torch.testing.assert_close(a[real], b[real], rtol=1e-5, atol=1e-5)


def test_grouped_mm_matches_loop():
    torch.manual_seed(0)
    moe = TokenMoE(16, 8, n_routed=4, top_k=2)
    x, group, valid = _inputs()
    y_loop, _ = moe(x, group, valid)
    moe.impl = "grouped_mm"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_gmm, _ = moe(x.to(torch.bfloat16), group, valid)
        moe.impl = "loop"
        y_loop_bf, _ = moe(x.to(torch.bfloat16), group, valid)
    torch.testing.assert_close(y_gmm.float(), y_loop_bf.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(y_gmm.float(), y_loop, rtol=5e-2, atol=5e-2)


def test_eval_forward_changes_nothing_and_is_deterministic(tiny_model, layout, make_batch):
    ids, mod, task = make_batch(layout)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    a = tiny_model(ids, mod, task)
    b = tiny_model(ids, mod, task)
    assert torch.equal(a.logits_BTV, b.logits_BTV)
    assert torch.equal(a.router.token_counts_LGR, b.router.token_counts_LGR)
    assert torch.equal(a.router.seq_weights_LBQ, b.router.seq_weights_LBQ)
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Train mode routes identically (no router noise, no running statistics).
    tiny_model.train()
    c = tiny_model(ids, mod, task)
    tiny_model.eval()
    assert torch.equal(a.router.token_counts_LGR, c.router.token_counts_LGR)
    torch.testing.assert_close(a.logits_BTV, c.logits_BTV)


def _reference_moe(moe: TokenMoE, x_BTD, group_B, valid_BT):
    """Per-token loop: shared + Σ_k w_k · routed_k, the definition the fast path implements."""
    B, T, D = x_BTD.shape
    out = torch.zeros_like(x_BTD)
    for b in range(B):
        g = int(group_B[b])
        for t in range(T):
            if not valid_BT[b, t]:
                continue
            x = x_BTD[b, t]
            probs = (moe.gate[g] @ x).softmax(-1)
            w, idx = probs.topk(moe.top_k)
            w = w / w.sum()
            experts = [(0, torch.ones(()))] + [
                (1 + int(i), wi) for i, wi in zip(idx, w, strict=True)
            ]
            y = torch.zeros(D)
            for e, we in experts:
                h = torch.nn.functional.gelu(
                    x @ moe.fc1_weight[g, e] + moe.fc1_bias[g, e], approximate="tanh"
                )
                y = y + we * (h @ moe.fc2_weight[g, e] + moe.fc2_bias[g, e])
            out[b, t] = y
    return out


def test_fast_path_matches_per_token_reference_with_gradients():
    torch.manual_seed(0)
    moe = TokenMoE(16, 8, n_routed=4, top_k=2)
    x, group, valid = _inputs()
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    target = torch.randn_like(x)
    y_fast, _ = moe(x1, group, valid)
    (y_fast * target).sum().backward()
    g_fast = {n: p.grad.clone() for n, p in moe.named_parameters()}
    moe.zero_grad()
    y_ref = _reference_moe(moe, x2, group, valid)
    (y_ref * target).sum().backward()
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    for n, p in moe.named_parameters():
        torch.testing.assert_close(g_fast[n], p.grad, rtol=1e-5, atol=1e-6, msg=n)


def test_per_assignment_path_matches_sorted_path():
    torch.manual_seed(0)
    moe = TokenMoE(16, 8, n_routed=4, top_k=2)
    x, group, valid = _inputs()
    y_sorted, _ = moe(x, group, valid)  # 19 tokens x 3 slots > 10 experts: sorted path
    for b, t in ((0, 3), (2, 5)):  # one token: 3 assignments, per-assignment path
        one = torch.zeros_like(valid)
        one[b, t] = True
        y_one, _ = moe(x, group, one)
        torch.testing.assert_close(y_one[b, t], y_sorted[b, t], rtol=1e-5, atol=1e-6)

"""Grouped token-level MoE (NOTES.md §3) and the dense Phi FFN it replaces.

Shape legend: N tokens (flattened), D model width, F expert hidden, G groups (= tasks),
X experts per group (1 shared + R routed), R routed experts, K top-k, A assignments.

Each sequence's tokens go to the expert group of its task (``Task.T2I`` / ``Task.MMU``).
A group has one shared expert (always on, weight 1) and R routed experts; a softmax router
picks the top-K routed experts per token and their probabilities are renormalised to sum
to 1 (DeepSeekMoE). Dropless: every assignment is computed. Pad tokens are skipped.

Implementation: token->expert assignments are sorted by expert, then each expert runs one
GEMM on its contiguous slice (a loop over the G·X experts, never over tokens). On the
2-core AMX CPU this measured faster than ``torch._grouped_mm`` (fwd+bwd, 2584 tokens,
18 experts of 512x256, bf16: loop 87 ms vs grouped_mm 129 ms), so the loop is the default;
``impl="grouped_mm"`` is kept for GPUs. When there are fewer assignments than experts (a
decoding step) each assignment runs directly on its expert's weight views instead. The
dispatch/combine permutations have gather-only backward passes (``_Dispatch``,
``_Combine``): the accumulating ``index_put`` behind ``x[idx]`` was a hot spot. The router
runs in fp32 even under autocast (bf16 logits flip top-K choices).

Balance loss per group (Switch Transformer, Fedus et al. 2021, eq. 4):
``R · Σ_i f_i · P_i`` with ``f_i`` the fraction of the group's top-K assignments that went
to routed expert i and ``P_i`` the group's mean router probability of i; 1.0 when uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_GROUPS = 2  # Task.T2I, Task.MMU


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The autocast dtype of x's device when autocast is on, else x's dtype."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


class _Dispatch(torch.autograd.Function):
    """``x_ND`` rows copied to sorted assignment slots: out[p] = x[order[p] // S].

    Backward gathers with the inverse permutation and sums each token's S slots, avoiding
    the slow accumulating ``index_put`` of a plain ``x[idx]``.
    """

    @staticmethod
    def forward(ctx, x_ND, order_A, inv_A, S: int):
        ctx.save_for_backward(inv_A)
        ctx.S = S
        return x_ND.index_select(0, order_A // S)

    @staticmethod
    def backward(ctx, grad_AD):
        (inv_A,) = ctx.saved_tensors
        g = grad_AD.index_select(0, inv_A).view(-1, ctx.S, grad_AD.shape[-1]).sum(1)
        return g, None, None, None


class _Combine(torch.autograd.Function):
    """Sorted expert outputs back to token-major order: out[a] = ys[inv[a]] (a permutation)."""

    @staticmethod
    def forward(ctx, ys_AD, order_A, inv_A):
        ctx.save_for_backward(order_A)
        return ys_AD.index_select(0, inv_A)

    @staticmethod
    def backward(ctx, grad_AD):
        (order_A,) = ctx.saved_tensors
        return grad_AD.index_select(0, order_A), None, None


class DenseFFN(nn.Module):
    """Phi MLP: ``fc2(gelu_tanh(fc1(x)))``."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x_NTD: torch.Tensor, *_args, **_kw) -> tuple[torch.Tensor, None]:
        return self.fc2(F.gelu(self.fc1(x_NTD), approximate="tanh")), None


@dataclass
class TokenRouting:
    """Router statistics of one token-MoE layer (valid tokens only).

    Attributes:
        counts_GR: assignments per routed expert (sums to K·tokens of the group).
        mean_prob_GR: mean router probability per routed expert.
        tokens_G: tokens per group.
        balance_G: balance loss per group (0 for an empty group).
    """

    counts_GR: torch.Tensor
    mean_prob_GR: torch.Tensor
    tokens_G: torch.Tensor
    balance_G: torch.Tensor


class TokenMoE(nn.Module):
    """Two groups of (1 shared + R routed) GELU experts, top-K routing inside the group.

    Parameters are stacked ``[G, X, in, out]`` (index 0 of X: the shared expert); the
    in x out layout keeps every per-expert weight gradient contiguous.
    """

    def __init__(self, d_model: int, hidden: int, n_routed: int, top_k: int, impl: str = "loop"):
        super().__init__()
        G, X = N_GROUPS, n_routed + 1
        self.n_routed, self.top_k, self.impl = n_routed, top_k, impl
        self.gate = nn.Parameter(torch.empty(G, n_routed, d_model))
        self.fc1_weight = nn.Parameter(torch.empty(G, X, d_model, hidden))
        self.fc1_bias = nn.Parameter(torch.zeros(G, X, hidden))
        self.fc2_weight = nn.Parameter(torch.empty(G, X, hidden, d_model))
        self.fc2_bias = nn.Parameter(torch.zeros(G, X, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default init (bound 1/sqrt(fan_in)), per expert.
        for w in (self.gate, self.fc1_weight, self.fc2_weight):
            fan_in = w.shape[-1] if w is self.gate else w.shape[2]
            bound = 1.0 / fan_in**0.5
            nn.init.uniform_(w, -bound, bound)
        nn.init.zeros_(self.fc1_bias)
        nn.init.zeros_(self.fc2_bias)

    @torch.no_grad()
    def upcycle_from_dense(self, dense: DenseFFN) -> None:
        """Sparse upcycling (Komatsuzaki et al. 2023) from a dense FFN.

        If expert width == dense width, every expert (shared and routed, both groups) is a
        copy of the dense FFN with its output projection halved, so for every token
        ``shared(x) + Σ_k w_k·E_k(x) = dense(x)`` exactly (top-K weights sum to 1).
        If the dense width is m times the expert width, expert i takes hidden segment
        ``i mod m`` (DeepSeekMoE fine-grained segmentation) with its output scaled by m/2:
        the dense FFN is then reproduced only in expectation over uniform routing.
        """
        H, F_ = dense.fc1.out_features, self.fc1_weight.shape[3]
        if H % F_:
            raise ValueError(f"dense hidden {H} is not a multiple of expert hidden {F_}")
        m = H // F_
        X = self.fc1_weight.shape[1]
        for x in range(X):
            s = slice((x % m) * F_, (x % m + 1) * F_)
            self.fc1_weight[:, x] = dense.fc1.weight[s].t()
            self.fc1_bias[:, x] = dense.fc1.bias[s]
            self.fc2_weight[:, x] = dense.fc2.weight[:, s].t() * (m / 2)
            self.fc2_bias[:, x] = dense.fc2.bias / 2

    def _route(self, x_ND: torch.Tensor, group_N: torch.Tensor):
        """Router probabilities probs_NR (fp32) and top-K (weights_NK, idx_NK)."""
        G, R = N_GROUPS, self.n_routed
        # Router in fp32 even under autocast (Switch Transformer's selective precision):
        # bf16 logits flip top-K choices.
        with torch.autocast(x_ND.device.type, enabled=False):
            logits = F.linear(x_ND.float(), self.gate.float().reshape(G * R, -1)).view(-1, G, R)
        # One-hot select of the token's own group (a gather's backward is slow on CPU).
        onehot = F.one_hot(group_N, G).to(logits.dtype)
        logits = (logits * onehot[:, :, None]).sum(1)
        probs = logits.float().softmax(-1)
        w, idx = probs.topk(self.top_k, dim=-1)
        return probs, w / w.sum(-1, keepdim=True), idx

    def _stats(self, probs_NR, idx_NK, group_N) -> TokenRouting:
        G, R, K = N_GROUPS, self.n_routed, self.top_k
        flat = (group_N[:, None] * R + idx_NK).reshape(-1)
        counts = torch.bincount(flat, minlength=G * R).view(G, R)
        tokens = torch.bincount(group_N, minlength=G)
        psum = torch.zeros(G, R, device=probs_NR.device).index_add_(0, group_N, probs_NR)
        denom = tokens.clamp_min(1).float()[:, None]
        mean_prob = psum / denom
        frac = counts.float() / (denom * K)
        balance = R * (frac * mean_prob).sum(-1)
        return TokenRouting(counts, mean_prob, tokens, balance)

    def _expert_weights(self, dtype: torch.dtype):
        """Per-expert weight views, cast once (unbind: one gradient buffer, not G·X)."""
        ws = (self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_bias)
        return [w.flatten(0, 1).to(dtype).unbind(0) for w in ws]

    def _experts_per_assignment(self, x_ND, expert_NS, weight_NS) -> torch.Tensor:
        """Few assignments (a decoding step): gather the selected experts' weights and run
        all N·S of them as two batched GEMVs.

        Same result as the sorted path. One gather + two ``baddbmm`` replace a GEMV pair per
        assignment on weight views: ~14 operators instead of ~70 per layer at N = 1
        (``benchmarks/bench_decode_ops.py``); the weight copy (N·S experts) is cheaper than
        the dispatch overhead it saves at these sizes (A/B in one process, one thread:
        N = 1..3 rows, 1.2-3x faster).
        """
        N, S = expert_NS.shape
        dt = _compute_dtype(x_ND)
        e_A = expert_NS.reshape(-1)
        w1, b1, w2, b2 = (
            w.flatten(0, 1).index_select(0, e_A).to(dt)
            for w in (self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_bias)
        )
        x_A1D = x_ND.to(dt)[:, None, None].expand(N, S, 1, x_ND.shape[1]).reshape(N * S, 1, -1)
        h = F.gelu(torch.baddbmm(b1[:, None], x_A1D, w1), approximate="tanh")
        y_NSD = torch.baddbmm(b2[:, None], h, w2).view(N, S, -1)
        return torch.bmm(weight_NS.to(dt)[:, None, :], y_NSD).squeeze(1)

    def _experts(self, x_ND, expert_NS, weight_NS) -> torch.Tensor:
        """``Σ_s weight_ns · expert_ns(x_n)`` over the S = 1 + K slots; returns y_ND.

        Assignments are laid out token-major (a = n·S + s), sorted by expert; the dispatch
        and combine are row permutations with gather-only backward passes.
        """
        G, X = self.fc1_weight.shape[:2]
        N, S = expert_NS.shape
        if N * S <= G * X:  # fewer assignments than experts: loop over assignments
            return self._experts_per_assignment(x_ND, expert_NS, weight_NS)
        expert_A = expert_NS.reshape(-1)
        order = expert_A.argsort(stable=True)
        inv = torch.empty_like(order).index_copy_(0, order, torch.arange(order.numel()))
        counts = torch.bincount(expert_A, minlength=G * X)
        dt = _compute_dtype(x_ND)
        xs = _Dispatch.apply(x_ND.to(dt), order, inv, S)
        if self.impl == "grouped_mm":
            w1, b1, w2, b2 = (
                w.flatten(0, 1).to(dt)
                for w in (self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_bias)
            )
            offs = counts.cumsum(0).to(torch.int32)
            e_s = expert_A[order]
            h = F.gelu(torch._grouped_mm(xs, w1, offs=offs) + b1[e_s], approximate="tanh")
            ys = torch._grouped_mm(h, w2, offs=offs) + b2[e_s]
        else:
            w1, b1, w2, b2 = self._expert_weights(dt)
            outs = []
            for e, xe in enumerate(xs.split(counts.tolist())):
                if xe.shape[0]:
                    he = F.gelu(torch.addmm(b1[e], xe, w1[e]), approximate="tanh")
                    outs.append(torch.addmm(b2[e], he, w2[e]))
            ys = torch.cat(outs)
        y_NSD = _Combine.apply(ys, order, inv).view(N, S, -1)
        return torch.bmm(weight_NS.to(y_NSD.dtype)[:, None, :], y_NSD).squeeze(1)

    def forward(
        self, x_BTD, group_B, valid_BT, stats: bool = True
    ) -> tuple[torch.Tensor, TokenRouting | None]:
        """Apply the MoE to the valid (non-pad) tokens; pads get 0.

        Args:
            x_BTD: normalised hidden states.
            group_B: task id of each row (expert group).
            valid_BT: True for real (non-pad) tokens.
            stats: also compute the routing statistics and balance loss (None if False:
                inference needs neither, and at one token per step they are ~8 % of the ops).
        """
        B, T, D = x_BTD.shape
        tok = valid_BT.reshape(-1).nonzero().squeeze(1)
        x_ND = x_BTD.reshape(-1, D)[tok]
        group_N = group_B[:, None].expand(B, T).reshape(-1)[tok]
        probs, w_NK, idx_NK = self._route(x_ND, group_N)
        stats = self._stats(probs, idx_NK, group_N) if stats else None
        if tok.numel() == 0:
            return torch.zeros_like(x_BTD), stats
        base = group_N[:, None] * (self.n_routed + 1)
        expert_NS = torch.cat([base, base + 1 + idx_NK], dim=1)  # slot 0: the shared expert
        weight_NS = torch.cat([torch.ones_like(w_NK[:, :1]), w_NK], dim=1)
        y_ND = self._experts(x_ND, expert_NS, weight_NS)
        out = y_ND.new_zeros(B * T, D).index_copy_(0, tok, y_ND)
        return out.view(B, T, D), stats

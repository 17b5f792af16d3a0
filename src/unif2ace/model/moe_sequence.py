"""Grouped sequence-level MoE (NOTES.md §4).

Shape legend: B rows, T positions, D model width, N feature tokens, F feature width,
Q sequence experts per group (4), G groups.

One routing decision per sequence: top-2 of 4 experts, weights renormalised, output
``Σ_q g_q·E_q(h)`` on the residual stream h. Groups (index = Task id):
T2I: Copy, Copy, Zero, Noise; MMU: Copy, Copy, Semantic, Face. ``E_copy(h) = h``,
``E_zero(h) = 0``, gated experts ``E(h) = w·h + (1−w)·S(ln(h), F(X))`` with S a
cross-attention resampler from the sequence to the features F(X) and w a softmax gate.

Design choice (what makes the prompt cache and the KV cache exact):

* **Routing input.** The router sees the mean normalised state over the sequence's
  *condition* positions only: for T2I the text positions before the first image position
  (the prompt), for MMU the image positions. Text rows of a T2I prompt never attend to the
  image, and image rows of an MMU sequence never attend to the text after them, so the
  routing decision never depends on the generated part: prompt keys/values can be cached
  across diffusion steps, and generated text cannot leak into earlier positions through a
  per-sequence decision. The noise level is *not* a router input (it changes every step).
* **Injection positions.** The resampler term ``(1−w)·S`` is added for T2I only from the
  first image position on (the prompt never sees the per-step noise level), and for MMU at
  every real position (its encoder features are fixed per sequence). The ``w·h`` part and
  Copy/Zero apply at every position of the sequence, which depends only on the routing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..vocab import Modality, Task
from .config import SEQ_EXPERTS_MMU, SEQ_EXPERTS_T2I

GROUP_EXPERTS: tuple[tuple[str, ...], ...] = (SEQ_EXPERTS_T2I, SEQ_EXPERTS_MMU)
GROUP_NAMES = ("t2i", "mmu")


def condition_mask(modality_BT: torch.Tensor, task_B: torch.Tensor) -> torch.Tensor:
    """Positions the sequence router pools over (see module docstring). Returns bool_BT."""
    is_img = modality_BT == Modality.IMAGE
    before_img = is_img.long().cumsum(1) == 0
    t2i = (modality_BT == Modality.TEXT) & before_img
    return torch.where((task_B == Task.T2I)[:, None], t2i, is_img)


def injection_mask(modality_BT: torch.Tensor, task_B: torch.Tensor) -> torch.Tensor:
    """Positions that receive the resampler term (see module docstring). Returns bool_BT."""
    real = modality_BT != Modality.PAD
    from_img = (modality_BT == Modality.IMAGE).long().cumsum(1) > 0
    return torch.where((task_B == Task.T2I)[:, None], real & from_img, real)


def sequence_balance(probs_BQ, weights_BQ, task_B, top_k: int) -> torch.Tensor:
    """Switch-style load-balance loss of the sequence routers, per group: balance_G (fp32).

    ``Q · Σ_q f_q · P_q`` over the group's rows, f_q the share of its top-k slots expert q
    takes and P_q its mean router probability (1 when balanced, Q when one expert takes
    every slot; 0 for a group without rows). Without it a layer whose router picks Copy +
    Copy is stuck there: the renormalised weights then sum to one on the identity, the
    output is h whatever the probabilities, and the task loss gives the router no gradient.
    """
    G, Q = len(GROUP_EXPERTS), probs_BQ.shape[-1]
    onehot_BG = F.one_hot(task_B, G).float()
    rows_G = onehot_BG.sum(0)
    chosen_BQ = (weights_BQ > 0).float()
    frac_GQ = onehot_BG.t() @ chosen_BQ / (rows_G[:, None] * top_k).clamp_min(1)
    mean_p_GQ = onehot_BG.t() @ probs_BQ.float() / rows_G[:, None].clamp_min(1)
    return Q * (frac_GQ * mean_p_GQ).sum(-1)


def off_copy_share(weights_LBQ: torch.Tensor, task_B: torch.Tensor) -> dict[str, float]:
    """Per group with rows: the mean over layers and the group's rows of the combine weight
    on experts other than Copy — 0 when every layer routes the group to Copy + Copy."""
    out = {}
    for g, kinds in enumerate(GROUP_EXPERTS):
        rows = task_B == g
        if bool(rows.any()):
            q = torch.tensor([k != "copy" for k in kinds], device=weights_LBQ.device)
            out[GROUP_NAMES[g]] = float(weights_LBQ[:, rows][..., q].sum(-1).mean())
    return out


class Resampler(nn.Module):
    """S: multi-head cross-attention, queries from the sequence, keys/values from features.

    Perceiver-resampler style (Alayrac et al. 2022): the features are LayerNorm-ed and
    projected; the output projection starts at zero so a new expert begins as ``w·h``.
    """

    def __init__(self, d_model: int, feat_dim: int, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_feats = nn.LayerNorm(feat_dim)
        self.q_proj = nn.Linear(d_model, dim)
        self.k_proj = nn.Linear(feat_dim, dim)
        self.v_proj = nn.Linear(feat_dim, dim)
        self.o_proj = nn.Linear(dim, d_model)
        nn.init.zeros_(self.o_proj.weight)
        nn.init.zeros_(self.o_proj.bias)

    def keys_values(self, feats_BNF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_BHNE, v_BHNE) of the feature tokens: fixed per sequence for the encoder
        experts, so a decoding cache computes them once (:class:`SequenceMoE`)."""
        B, N, _ = feats_BNF.shape
        f = self.norm_feats(feats_BNF)
        k = self.k_proj(f).view(B, N, self.heads, -1).transpose(1, 2)
        v = self.v_proj(f).view(B, N, self.heads, -1).transpose(1, 2)
        return k, v

    def forward(
        self,
        x_BTD: torch.Tensor,
        feats_BNF: torch.Tensor | None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """S(x, feats); ``kv``: :meth:`keys_values` of the features, computed before."""
        B, T, _ = x_BTD.shape
        k, v = kv if kv is not None else self.keys_values(feats_BNF)
        q = self.q_proj(x_BTD).view(B, T, self.heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype))
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class GatedExpert(nn.Module):
    """``w·h + (1−w)·S(ln h, feats)``; ``gate_logits`` holds the 2-way softmax gate."""

    def __init__(self, d_model: int, feat_dim: int, dim: int, heads: int):
        super().__init__()
        self.resampler = Resampler(d_model, feat_dim, dim, heads)
        self.gate_logits = nn.Parameter(torch.zeros(2))
        # Used when a row has no features (e.g. no image given): S attends to this token.
        self.null_feats = nn.Parameter(torch.zeros(1, 1, feat_dim))

    def w(self) -> torch.Tensor:
        return self.gate_logits.float().softmax(0)[0]


class SequenceMoE(nn.Module):
    """Grouped sequence-level MoE; see the module docstring."""

    def __init__(self, d_model: int, top_k: int, feat_dims: dict[str, int], dim: int, heads: int):
        super().__init__()
        self.top_k = top_k
        n_q = len(SEQ_EXPERTS_T2I)
        self.router = nn.Parameter(torch.randn(len(GROUP_EXPERTS), n_q, d_model) * d_model**-0.5)
        self.experts = nn.ModuleDict()
        for g, kinds in enumerate(GROUP_EXPERTS):
            for kind in kinds:
                if kind not in ("copy", "zero"):
                    self.experts[f"{GROUP_NAMES[g]}_{kind}"] = GatedExpert(
                        d_model, feat_dims[kind], dim, heads
                    )

    def route_probs(self, x_BTD, cond_BT, task_B) -> torch.Tensor:
        """Router probabilities probs_BQ over the row's group's experts, fp32."""
        with torch.autocast(x_BTD.device.type, enabled=False):  # route in fp32
            c = cond_BT[..., None].float()
            pooled = (x_BTD.float() * c).sum(1) / c.sum(1).clamp_min(1)
            logits = torch.einsum("bd,bqd->bq", pooled, self.router[task_B].float())
        return logits.softmax(-1)

    def top_k_weights(self, probs_BQ: torch.Tensor) -> torch.Tensor:
        """Combine weights weights_BQ from :meth:`route_probs`: top-k renormalised, zeros
        elsewhere, fp32."""
        w, idx = probs_BQ.topk(self.top_k, dim=-1)
        return torch.zeros_like(probs_BQ).scatter(1, idx, w / w.sum(-1, keepdim=True))

    def _coeff_GQ(self) -> torch.Tensor:
        """c_GQ (fp32): copy 1, zero 0, gated expert w — all gates in one softmax."""
        base, where, gated = [], [], []
        for g, kinds in enumerate(GROUP_EXPERTS):
            base.append([1.0 if k == "copy" else 0.0 for k in kinds])
            for q, k in enumerate(kinds):
                if k not in ("copy", "zero"):
                    where.append((g, q))
                    gated.append(self._expert(g, k).gate_logits)
        w = torch.stack(gated).float().softmax(-1)[:, 0]
        c = torch.tensor(base, device=w.device)
        g_idx, q_idx = (torch.tensor(ix, device=w.device) for ix in zip(*where, strict=True))
        return c.index_put((g_idx, q_idx), w)

    def _expert(self, g: int, kind: str) -> GatedExpert:
        return self.experts[f"{GROUP_NAMES[g]}_{kind}"]

    def forward(
        self, h_BTD, x_BTD, task_B, weights_BQ, inj_BT, feats, feat_kv: dict | None = None
    ) -> torch.Tensor:
        """Apply the routed experts.

        Args:
            h_BTD: residual stream (what Copy/Zero/w act on).
            x_BTD: its LayerNorm (resampler queries).
            task_B: group of each row.
            weights_BQ: combine weights from :meth:`route`.
            inj_BT: positions receiving the resampler term (:func:`injection_mask`).
            feats: kind -> feats_BNF ("semantic", "face", "noise"); missing -> null token.
            feat_kv: a decoding cache's store of the resampler keys/values of fixed features
                (every kind but "noise", whose features change each sampling step), keyed by
                expert and rows; filled on first use, read afterwards.
        """
        c_GQ = self._coeff_GQ()
        coeff_B = (weights_BQ * c_GQ[task_B]).sum(-1)
        out = h_BTD * coeff_B[:, None, None].to(h_BTD.dtype)
        # Which rows use which gated expert, decided on the host once per call (a decoding
        # step is one row: index ops on it cost more than the arithmetic).
        task_l, used = task_B.tolist(), (weights_BQ > 0).tolist()
        B = len(task_l)
        for g, kinds in enumerate(GROUP_EXPERTS):
            for q, kind in enumerate(kinds):
                if kind in ("copy", "zero"):
                    continue
                rows_l = [b for b in range(B) if task_l[b] == g and used[b][q]]
                if not rows_l:
                    continue
                ex = self._expert(g, kind)
                f = feats.get(kind) if feats else None
                scale = weights_BQ[:, q] * (1 - c_GQ[g, q])
                key = (f"{GROUP_NAMES[g]}_{kind}", tuple(rows_l))
                kv = feat_kv.get(key) if feat_kv is not None and kind != "noise" else None
                if len(rows_l) == B:  # every row: no gather, no scatter
                    f = ex.null_feats.expand(B, -1, -1) if f is None else f
                    if kv is None and feat_kv is not None and kind != "noise":
                        kv = feat_kv[key] = ex.resampler.keys_values(f)
                    s = ex.resampler(x_BTD, f, kv)
                    s = s * (scale[:, None, None] * inj_BT[:, :, None]).to(s.dtype)
                    out = out + s.to(out.dtype)
                    continue
                rows = torch.tensor(rows_l, device=h_BTD.device)
                if kv is None:
                    f = ex.null_feats.expand(len(rows_l), -1, -1) if f is None else f[rows]
                    if feat_kv is not None and kind != "noise":
                        kv = feat_kv[key] = ex.resampler.keys_values(f)
                s = ex.resampler(x_BTD[rows], f, kv)
                s = s * (scale[rows, None, None] * inj_BT[rows, :, None]).to(s.dtype)
                # index_copy into zeros: index_add's CPU kernel is a slow scatter_add.
                out = out + torch.zeros_like(out).index_copy(0, rows, s.to(out.dtype))
        return out

"""Omni-attention (Show-o): masks, rotary embeddings and the Phi-style attention layer.

Shape legend: B batch, T query positions, S key positions (cache + new), H heads,
E head dim, R rotary dim, D model width.

Mask rule (NOTES.md §1, Show-o "omni-attention"), from per-position :class:`Modality` ids:
text rows are causal; image rows see the whole prefix and every image token of the sequence
(bidirectional inside the image); pad keys are invisible to every row. Every row also sees
itself, so a pad row (which sees nothing else) yields finite values instead of NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..vocab import Modality


def omni_mask(modality_BS: torch.Tensor, query_start: int = 0) -> torch.Tensor:
    """Boolean attention mask (True = may attend) for the query rows ``[query_start, S)``.

    Args:
        modality_BS: Modality ids of all positions (cached ones first).
        query_start: first query position (rows before it are cached and need no mask).

    Returns:
        mask_B1TS with T = S - query_start, broadcastable over heads.
    """
    S = modality_BS.shape[1]
    dev = modality_BS.device
    q_idx = torch.arange(query_start, S, device=dev)
    k_idx = torch.arange(S, device=dev)
    causal_TS = k_idx[None, :] <= q_idx[:, None]
    is_img_BS = modality_BS == Modality.IMAGE
    key_ok_B1S = (modality_BS != Modality.PAD)[:, None, :]
    img_pair_BTS = is_img_BS[:, query_start:, None] & is_img_BS[:, None, :]
    mask_BTS = (causal_TS[None] | img_pair_BTS) & key_ok_B1S
    mask_BTS = mask_BTS | (k_idx[None, :] == q_idx[:, None])[None]
    return mask_BTS[:, None]


def reference_omni_mask(modality_BS: torch.Tensor) -> torch.Tensor:
    """Slow Python-loop version of :func:`omni_mask` (for tests). Returns mask_B1SS."""
    B, S = modality_BS.shape
    m = modality_BS.tolist()
    out = torch.zeros(B, 1, S, S, dtype=torch.bool)
    for b in range(B):
        for i in range(S):
            for j in range(S):
                if i == j:
                    out[b, 0, i, j] = True
                elif m[b][j] == Modality.PAD:
                    continue
                elif j < i:
                    out[b, 0, i, j] = True
                elif m[b][i] == Modality.IMAGE and m[b][j] == Modality.IMAGE:
                    out[b, 0, i, j] = True
    return out


def positions_from_modality(modality_BT: torch.Tensor, start_B: torch.Tensor | None = None):
    """Rotary positions that skip pads, so left padding does not change any result.

    Args:
        modality_BT: Modality ids of the new positions.
        start_B: number of non-pad positions already cached (None = 0).

    Returns:
        pos_BT (long): index of each position among the non-pad positions (pads get the
        position of the previous real token, their value is never used).
    """
    real = (modality_BT != Modality.PAD).long()
    pos = real.cumsum(1) - 1
    if start_B is not None:
        pos = pos + start_B[:, None]
    return pos.clamp_min(0)


def rotary_cos_sin(pos_BT: torch.Tensor, rot_dim: int, theta: float):
    """cos_BTR, sin_BTR (R = rot_dim / 2 frequencies) of rotate-half rotary embeddings."""
    inv = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, device=pos_BT.device).float() / rot_dim))
    ang = pos_BT.float()[..., None] * inv
    return ang.cos(), ang.sin()


def _rotate_half_matrix(R: int, E: int, like: torch.Tensor) -> torch.Tensor:
    """Signed permutation P_EE with ``(x @ P)[i] = -x[i+R]`` (i < R), ``x[i-R]`` (R <= i < 2R),
    0 elsewhere. Exact in bf16 (one ±1 term per output)."""
    P = torch.zeros(E, E, dtype=like.dtype, device=like.device)
    i = torch.arange(R, device=like.device)
    P[i + R, i] = -1
    P[i, i + R] = 1
    return P


class RotaryTables:
    """Full-width rotary tables of one forward's new positions, built once per dtype and
    shared by every layer (per layer they were ~24 of a decoding step's ~270 operators).

    ``get(E, dtype)`` -> ``(C_BT1E, S_BT1E, P_EE)`` with C = cos, S = sin on the first 2R
    dims (C = 1, S = 0 on pass-through dims) and P the signed rotate-half permutation.
    """

    def __init__(self, cos_BTR: torch.Tensor, sin_BTR: torch.Tensor) -> None:
        self.cos_BTR, self.sin_BTR = cos_BTR, sin_BTR
        self._tables: dict[tuple[int, torch.dtype], tuple[torch.Tensor, ...]] = {}

    @property
    def rot_half(self) -> int:
        return self.cos_BTR.shape[-1]

    def get(self, E: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (E, dtype)
        if key not in self._tables:
            cos, sin = self.cos_BTR, self.sin_BTR
            B, T, R = cos.shape
            ones = cos.new_ones(B, T, E - 2 * R)
            C = torch.cat([cos, cos, ones], -1).to(dtype)[:, :, None]
            S = torch.cat([sin, sin, ones * 0], -1).to(dtype)[:, :, None]
            self._tables[key] = (C, S, _rotate_half_matrix(R, E, C))
        return self._tables[key]


def apply_rotary(x_BTHE: torch.Tensor, cos_BTR: torch.Tensor, sin_BTR: torch.Tensor):
    """Rotate the first 2R dims of each head (partial rotary, GPT-NeoX/Phi rotate-half
    convention: pairs (i, i + R)); the remaining dims pass through. Any dims may sit
    between T and E (heads, or q/k and heads)."""
    return apply_rotary_tables(x_BTHE, RotaryTables(cos_BTR, sin_BTR))


def apply_rotary_tables(x_BTHE: torch.Tensor, rot: RotaryTables) -> torch.Tensor:
    """:func:`apply_rotary` with prebuilt tables.

    Computed as ``x·C + (x @ P)·S`` with full-width tables: a cat along the last dim of
    16-element chunks is slow on CPU, a 64x64 matmul is not.
    """
    if rot.rot_half == 0:
        return x_BTHE
    B, T = rot.cos_BTR.shape[:2]
    E = x_BTHE.shape[-1]
    C, S, P = rot.get(E, x_BTHE.dtype)
    x_BTME = x_BTHE.reshape(B, T, -1, E)  # M = heads (x q/k); one copy if x is a view
    rot_BTME = (x_BTME.reshape(-1, E) @ P).view_as(x_BTME)
    return (x_BTME * C + rot_BTME * S).view(x_BTHE.shape)


def attention_bias(mask_B1TS: torch.Tensor, n_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive bias (0 / -inf) of a boolean mask, expanded to bias_NTS (N = B·heads)."""
    B, _, T, S = mask_B1TS.shape
    bias = torch.zeros(B, 1, T, S, dtype=dtype, device=mask_B1TS.device)
    bias = bias.masked_fill(~mask_B1TS, float("-inf"))
    return bias.expand(B, n_heads, T, S).reshape(B * n_heads, T, S)


def attend(q_BHTE, k_BHSE, v_BHSE, mask) -> torch.Tensor:
    """Softmax attention. ``mask`` is either a boolean mask_B1TS (runs
    ``scaled_dot_product_attention``) or an additive bias_NTS from :func:`attention_bias`
    (runs baddbmm -> softmax -> bmm: measured 1.8x faster than the CPU flash kernel for
    fwd+bwd at T=323, one thread, bf16; the scores are then rounded to the input dtype,
    as P is in flash attention). Returns y_BHTE."""
    if mask.dtype == torch.bool:
        return F.scaled_dot_product_attention(q_BHTE, k_BHSE, v_BHSE, attn_mask=mask)
    B, H, T, E = q_BHTE.shape
    S = k_BHSE.shape[2]
    q = q_BHTE.reshape(B * H, T, E)
    k = k_BHSE.reshape(B * H, S, E)
    s = torch.baddbmm(mask.to(q.dtype), q, k.transpose(1, 2), alpha=E**-0.5)
    with torch.autocast(q.device.type, enabled=False):
        p = s.softmax(-1)
    return torch.bmm(p, v_BHSE.reshape(B * H, S, E).to(p.dtype)).view(B, H, T, E)


class Attention(nn.Module):
    """Phi attention: fused q/k/v projection (``qkv_proj``, rows q then k then v; Phi-1.5's
    original mixformer checkpoint calls it ``Wqkv``) and ``dense`` output, both with bias;
    partial rotary; optional QK-norm. Fused, because concatenating separate q/k/v weights
    at every call copies 3·D² weights per layer (dominant in a one-token decoding step).
    """

    def __init__(self, d_model: int, n_heads: int, rot_dim: int, qk_norm: bool, eps: float):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.rot_dim = rot_dim
        self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.dense = nn.Linear(d_model, d_model)
        self.qk_norm = qk_norm
        if qk_norm:
            self.q_layernorm = nn.LayerNorm(self.head_dim, eps=eps)
            self.k_layernorm = nn.LayerNorm(self.head_dim, eps=eps)

    def forward(self, x_BTD, rot: RotaryTables, mask_B1TS, kv=None, commit: bool = True):
        """Attend the new positions to (cached +) new keys.

        Args:
            x_BTD: normalised hidden states of the new positions.
            rot: rotary tables of the new positions.
            mask_B1TS: omni mask rows of the new positions over all S keys (bool), or
                its additive form from :func:`attention_bias` (see :func:`attend`).
            kv: a :class:`~unif2ace.model.cache.LayerKV` holding earlier keys/values, or None.
            commit: whether the new keys/values are kept in ``kv`` for later calls.
        """
        B, T, D = x_BTD.shape
        qkv = self.qkv_proj(x_BTD).view(B, T, 3, self.n_heads, self.head_dim)
        qk, v = qkv.split([2, 1], dim=2)  # split: cheap backward (no zero-filled grads)
        v = v.squeeze(2)
        if self.qk_norm:
            qk = torch.stack([self.q_layernorm(qk[:, :, 0]), self.k_layernorm(qk[:, :, 1])], 2)
        qk = apply_rotary_tables(qk, rot)  # q and k rotated together
        q, k = qk.transpose(1, 3).unbind(2)  # [B, H, T, E] each
        v = v.transpose(1, 2)
        if kv is not None:
            k, v = kv.extend(k, v, commit)
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = attend(q, k, v, mask_B1TS)
        return self.dense(y.transpose(1, 2).reshape(B, T, D))

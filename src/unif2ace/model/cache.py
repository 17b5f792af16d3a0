"""Key/value cache shared by the prompt cache (image generation) and AR text decoding.

Shape legend: B rows, H heads, S cached positions, E head dim, Q sequence experts.

One :class:`ModelCache` holds, per layer, the keys/values of the committed positions, plus
everything a later call needs to reproduce the uncached forward exactly: the committed
modality ids (for the omni mask), the count of real tokens per row (rotary positions), the
per-layer sequence-level routing weights (decided once, on the first call) and the encoder
features of each row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..vocab import Modality


class LayerKV:
    """Growable key/value buffers of one layer, ``k_BHSE`` / ``v_BHSE``."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0
        # Sequence-MoE resampler keys/values of fixed encoder features, per (expert, rows):
        # the features do not change while a sequence is decoded (SequenceMoE.forward).
        self.feat_kv: dict = {}

    def _ensure(self, like: torch.Tensor, need: int) -> None:
        if self.k is not None and self.k.shape[2] >= need:
            return
        cap = max(need, 2 * (self.k.shape[2] if self.k is not None else 0), 64)
        B, H, _, E = like.shape
        k = like.new_empty(B, H, cap, E)
        v = like.new_empty(B, H, cap, E)
        if self.k is not None:
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v

    def extend(self, k_new, v_new, commit: bool):
        """Write new keys/values after the committed ones; return all of them (views).

        With ``commit=False`` the new entries are scratch: the next call overwrites them
        (the prompt cache: image positions change at every sampling step).
        """
        end = self.length + k_new.shape[2]
        self._ensure(k_new, end)
        self.k[:, :, self.length : end] = k_new
        self.v[:, :, self.length : end] = v_new
        if commit:
            self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def select(self, index_B: torch.Tensor) -> LayerKV:
        """A copy holding rows ``index_B`` (repeats allowed: one row per question about a
        shared image prefix), feature keys/values included."""
        out = LayerKV()
        if self.k is not None:
            out.k = self.k[:, :, : self.length].index_select(0, index_B)
            out.v = self.v[:, :, : self.length].index_select(0, index_B)
        out.length = self.length
        index = index_B.tolist()
        for (name, rows), (k, v) in self.feat_kv.items():
            pos = {r: j for j, r in enumerate(rows)}
            new_rows = [b for b, i in enumerate(index) if i in pos]
            if not new_rows:  # no selected row uses this expert (row-dependent routing)
                continue
            at = torch.tensor([pos[index[b]] for b in new_rows], device=k.device)
            out.feat_kv[(name, tuple(new_rows))] = (k.index_select(0, at), v.index_select(0, at))
        return out

    def rows(self, n: int) -> LayerKV:
        """A view of the first n rows (shares the buffers; feature keys/values are recomputed
        on first use, since they are stored per row set)."""
        out = LayerKV()
        if self.k is not None:
            out.k, out.v = self.k[:n], self.v[:n]
        out.length = self.length
        return out


@dataclass
class ModelCache:
    """Cache of a :class:`~unif2ace.model.transformer.UnifiedTransformer` forward.

    Attributes:
        layers: one :class:`LayerKV` per block.
        modality_BS: Modality ids of the committed positions.
        seq_route: per layer, the sequence-level combine weights ``weights_BQ`` (None until
            the first call decides them).
        encoder_feats: encoder features used by the sequence-level experts (per row).
    """

    layers: list[LayerKV]
    modality_BS: torch.Tensor | None = None
    seq_route: list[torch.Tensor | None] = field(default_factory=list)
    encoder_feats: dict[str, torch.Tensor] | None = None

    @classmethod
    def empty(cls, n_layers: int) -> ModelCache:
        return cls(layers=[LayerKV() for _ in range(n_layers)], seq_route=[None] * n_layers)

    @property
    def length(self) -> int:
        return 0 if self.modality_BS is None else self.modality_BS.shape[1]

    def n_real_B(self) -> torch.Tensor | None:
        """Committed non-pad positions per row (the next rotary position)."""
        if self.modality_BS is None:
            return None
        return (self.modality_BS != Modality.PAD).sum(1)

    def full_modality(self, new_BT: torch.Tensor) -> torch.Tensor:
        """Committed + new modality ids, modality_BS."""
        if self.modality_BS is None:
            return new_BT
        return torch.cat([self.modality_BS, new_BT], dim=1)

    def commit(self, new_BT: torch.Tensor) -> None:
        self.modality_BS = self.full_modality(new_BT)

    def select(self, index_B: torch.Tensor) -> ModelCache:
        """A cache whose row b is this cache's row ``index_B[b]`` (copies; repeats allowed):
        a prefix computed once per image, continued by several questions about it."""
        feats = None
        if self.encoder_feats is not None:
            feats = {k: v.index_select(0, index_B) for k, v in self.encoder_feats.items()}
        return ModelCache(
            layers=[kv.select(index_B) for kv in self.layers],
            modality_BS=None if self.modality_BS is None else self.modality_BS[index_B],
            seq_route=[None if r is None else r[index_B] for r in self.seq_route],
            encoder_feats=feats,
        )

    def rows(self, n: int) -> ModelCache:
        """A view of the first n rows (e.g. the conditional half of a guidance batch)."""
        feats = None
        if self.encoder_feats is not None:
            feats = {k: v[:n] for k, v in self.encoder_feats.items()}
        return ModelCache(
            layers=[kv.rows(n) for kv in self.layers],
            modality_BS=None if self.modality_BS is None else self.modality_BS[:n],
            seq_route=[None if r is None else r[:n] for r in self.seq_route],
            encoder_feats=feats,
        )

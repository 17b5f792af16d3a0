"""The UniF²ace network: a Phi-style decoder with omni-attention and two MoE levels.

Shape legend: B rows, T new positions, S all positions (cache + new), D width, V vocabulary,
L layers, G groups (tasks), R routed experts, Q sequence experts.

Block (NOTES.md §1): attention -> LayerNorm -> grouped token MoE -> LayerNorm -> grouped
sequence MoE. Residual layout (Phi): parallel ``h + attn(ln(h)) + ffn(ln(h))`` or sequential
``h + attn(ln1(h))`` then ``+ ffn(ln2(h))``; the sequence MoE then maps ``h -> Σ g·E(h)``
with its own LayerNorm for the router and resampler queries (see ``moe_sequence``).

The network maps inputs to logits and nothing else (DESIGN principle 1): no losses, no
sampling. The balance loss it returns is a router statistic for the trainer to weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..vocab import Modality, VocabLayout
from .attention import (
    Attention,
    RotaryTables,
    attention_bias,
    omni_mask,
    positions_from_modality,
    rotary_cos_sin,
)
from .cache import LayerKV, ModelCache
from .config import ModelConfig
from .encoders import NoiseEmbedder, build_encoder
from .moe_sequence import SequenceMoE, condition_mask, injection_mask, sequence_balance
from .moe_token import N_GROUPS, DenseFFN, TokenMoE, TokenRouting


@dataclass
class RouterStats:
    """Routing statistics of one forward (token stats over real tokens only).

    Attributes:
        token_counts_LGR: top-K assignments per routed expert (None without token MoE).
        token_mean_prob_LGR: mean router probability per routed expert.
        tokens_G: real tokens per group.
        seq_weights_LBQ: sequence-level combine weights (None without sequence MoE).
    """

    token_counts_LGR: torch.Tensor | None
    token_mean_prob_LGR: torch.Tensor | None
    tokens_G: torch.Tensor | None
    seq_weights_LBQ: torch.Tensor | None


@dataclass
class ModelOutput:
    """Result of :meth:`UnifiedTransformer.forward`.

    Attributes:
        logits_BTV: next-token / denoising logits (V may be a slice, see ``vocab_slice``).
        balance_loss: Σ over groups of the per-group balance loss, mean over layers
            (0 without token MoE).
        balance_loss_G: per-group balance loss (T2I, MMU), mean over layers.
        router: routing statistics.
        seq_balance_loss: the same for the sequence-level routers
            (:func:`~unif2ace.model.moe_sequence.sequence_balance`; 0 without sequence MoE,
            without router stats, or when the routes came from a cache).
        seq_balance_loss_G: per group, mean over layers.
    """

    logits_BTV: torch.Tensor
    balance_loss: torch.Tensor
    balance_loss_G: torch.Tensor
    router: RouterStats
    seq_balance_loss: torch.Tensor
    seq_balance_loss_G: torch.Tensor


@dataclass
class _Context:
    """Per-forward tensors shared by all blocks."""

    rot: RotaryTables
    attn_mask: torch.Tensor  # bool mask_B1TS or additive bias_NTS
    task_B: torch.Tensor
    valid_BT: torch.Tensor
    cond_BT: torch.Tensor
    inj_BT: torch.Tensor
    feats: dict[str, torch.Tensor]
    commit: bool
    router_stats: bool = True


def _autocast_input(x: torch.Tensor) -> torch.Tensor:
    """Cast a LayerNorm output once to the autocast dtype (attention and FFN share it)."""
    if torch.is_autocast_enabled(x.device.type):
        return x.to(torch.get_autocast_dtype(x.device.type))
    return x


class Block(nn.Module):
    """One decoder block (Phi names: input_layernorm, self_attn, mlp)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, eps = cfg.d_model, cfg.layer_norm_eps
        self.parallel = cfg.parallel_residual
        self.input_layernorm = nn.LayerNorm(D, eps=eps)
        self.self_attn = Attention(D, cfg.n_heads, cfg.rotary_dim, cfg.qk_norm, eps)
        if not self.parallel:
            self.post_attention_layernorm = nn.LayerNorm(D, eps=eps)
        if cfg.token_moe:
            self.mlp = TokenMoE(D, cfg.expert_hidden, cfg.n_routed_experts, cfg.top_k)
        else:
            self.mlp = DenseFFN(D, cfg.ffn_hidden)
        self.seq_moe = None
        if cfg.seq_moe:
            dims = {
                "semantic": cfg.semantic_feature_dim,
                "face": cfg.face_feature_dim,
                "noise": cfg.noise_feature_dim,
            }
            self.seq_moe_layernorm = nn.LayerNorm(D, eps=eps)
            self.seq_moe = SequenceMoE(
                D, cfg.seq_top_k, dims, cfg.resampler_dim, cfg.resampler_heads
            )

    def forward(self, h_BTD, ctx: _Context, kv: LayerKV | None, route_BQ: torch.Tensor | None):
        """Returns (h_BTD, token routing or None, sequence combine weights or None, sequence
        balance_G or None: only when the weights were computed here with router stats)."""
        x = _autocast_input(self.input_layernorm(h_BTD))
        attn = self.self_attn(x, ctx.rot, ctx.attn_mask, kv, ctx.commit)
        if not self.parallel:
            h_BTD = h_BTD + attn
            x = _autocast_input(self.post_attention_layernorm(h_BTD))
        ffn, routing = self.mlp(x, ctx.task_B, ctx.valid_BT, stats=ctx.router_stats)
        h_BTD = h_BTD + ffn + attn if self.parallel else h_BTD + ffn
        seq_balance_G = None
        if self.seq_moe is not None:
            x = self.seq_moe_layernorm(h_BTD)
            if route_BQ is None:
                probs_BQ = self.seq_moe.route_probs(x, ctx.cond_BT, ctx.task_B)
                route_BQ = self.seq_moe.top_k_weights(probs_BQ)
                if ctx.router_stats:
                    seq_balance_G = sequence_balance(
                        probs_BQ, route_BQ, ctx.task_B, self.seq_moe.top_k
                    )
            feat_kv = kv.feat_kv if kv is not None else None
            h_BTD = self.seq_moe(h_BTD, x, ctx.task_B, route_BQ, ctx.inj_BT, ctx.feats, feat_kv)
        return h_BTD, routing, route_BQ, seq_balance_G


class UnifiedTransformer(nn.Module):
    """UniF²ace network; build with :func:`build_model`.

    Args:
        cfg: architecture.
        vocab_size: ``layout.size``.
        mask_id: ``layout.mask_id`` (to derive the noise level from the ids).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, mask_id: int):
        super().__init__()
        self.cfg, self.vocab_size, self.mask_id = cfg, vocab_size, mask_id
        self.embed_tokens = nn.Embedding(vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_layernorm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, vocab_size)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.encoders = nn.ModuleDict()
        if cfg.seq_moe:
            self.encoders["semantic"] = build_encoder(
                cfg.semantic_encoder, cfg.semantic_feature_dim, width=cfg.encoder_width
            )
            self.encoders["face"] = build_encoder(
                cfg.face_encoder, cfg.face_feature_dim, width=cfg.encoder_width
            )
            self.noise_embedder = NoiseEmbedder(cfg.noise_feature_dim, cfg.noise_tokens)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # Phi/GPT-2: normal(0, 0.02) weights, zero biases; LayerNorm at (1, 0); resampler
        # output projections and gates stay at their zero init.
        for name, p in self.named_parameters():
            if ".resampler.o_proj" in name or name.startswith("encoders."):
                continue
            if "layernorm" in name or "norm_feats" in name or "gate_logits" in name:
                continue
            if "null_feats" in name:
                continue
            if name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=0.02)

    def _attn_mask(self, modality_BS: torch.Tensor, q0: int) -> torch.Tensor:
        mask = omni_mask(modality_BS, q0)
        impl = self.cfg.attn_impl
        if impl == "auto":
            impl = "math" if modality_BS.device.type == "cpu" else "sdpa"
        if impl == "sdpa":
            return mask
        dev = modality_BS.device.type
        on = torch.is_autocast_enabled(dev)
        dtype = torch.get_autocast_dtype(dev) if on else self.embed_tokens.weight.dtype
        return attention_bias(mask, self.cfg.n_heads, dtype)

    def encode_images(self, images_BCHW: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder features for the MMU experts: {"semantic": feats_BNF, "face": feats_BNF}."""
        return {name: enc.features(images_BCHW) for name, enc in self.encoders.items()}

    def noise_level_from_ids(self, ids_BT, modality_BT) -> torch.Tensor:
        """Fraction of the image positions holding [MASK] per row (0 without image)."""
        img = modality_BT == Modality.IMAGE
        masked = (ids_BT == self.mask_id) & img
        return masked.sum(1).float() / img.sum(1).clamp_min(1).float()

    def _features(self, ids_BT, modality_BT, noise_level_B, encoder_feats, cache):
        if not self.cfg.seq_moe:
            return {}
        feats = dict(encoder_feats or (cache.encoder_feats if cache is not None else None) or {})
        if noise_level_B is None:
            noise_level_B = self.noise_level_from_ids(ids_BT, modality_BT)
        feats["noise"] = self.noise_embedder(noise_level_B)
        return feats

    def forward(
        self,
        ids_BT: torch.Tensor,
        modality_BT: torch.Tensor,
        task_B: torch.Tensor,
        noise_level_B: torch.Tensor | None = None,
        encoder_feats: dict[str, torch.Tensor] | None = None,
        cache: ModelCache | None = None,
        commit: bool = True,
        last_only: bool = False,
        vocab_slice: tuple[int, int] | None = None,
        router_stats: bool = True,
    ) -> ModelOutput:
        """Logits for the new positions.

        Args:
            ids_BT: token ids (``layout`` ids; [MASK] at masked image positions).
            modality_BT: :class:`Modality` id per position (PAD / TEXT / IMAGE).
            task_B: :class:`Task` id per row (token-MoE group, sequence-MoE group).
            noise_level_B: mask ratio for the Noise expert; None = derived from the ids.
            encoder_feats: {"semantic", "face"} -> feats_BNF for MMU rows
                (:meth:`encode_images`); missing -> each expert's learned null token.
            cache: continue from a :class:`ModelCache` (ids are the positions after it).
            commit: keep these positions in the cache (False: scratch, e.g. image steps).
            last_only: logits of the last position only (prefill for decoding).
            vocab_slice: (start, stop) vocabulary columns to compute.
            router_stats: compute token-routing statistics and the balance loss (False:
                ``router.token_*`` are None and the balance loss 0, as samplers need).
        """
        q0 = cache.length if cache is not None else 0
        full_mod = cache.full_modality(modality_BT) if cache is not None else modality_BT
        pos = positions_from_modality(modality_BT, cache.n_real_B() if cache else None)
        cos, sin = rotary_cos_sin(pos, self.cfg.rotary_dim, self.cfg.rope_theta)
        ctx = _Context(
            rot=RotaryTables(cos, sin),
            attn_mask=self._attn_mask(full_mod, q0),
            task_B=task_B,
            valid_BT=modality_BT != Modality.PAD,
            cond_BT=condition_mask(modality_BT, task_B),
            inj_BT=injection_mask(full_mod, task_B)[:, q0:],
            feats=self._features(ids_BT, modality_BT, noise_level_B, encoder_feats, cache),
            commit=commit,
            router_stats=router_stats,
        )
        h = self.embed_tokens(ids_BT)
        routings: list[TokenRouting] = []
        routes: list[torch.Tensor] = []
        seq_bal: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            kv = cache.layers[i] if cache is not None else None
            route = cache.seq_route[i] if cache is not None else None
            h, routing, route, bal_G = layer(h, ctx, kv, route)
            if routing is not None:
                routings.append(routing)
            if bal_G is not None:
                seq_bal.append(bal_G)
            if route is not None:
                routes.append(route)
                if cache is not None and commit:
                    cache.seq_route[i] = route
        if cache is not None and commit:
            cache.commit(modality_BT)
            if encoder_feats is not None:
                cache.encoder_feats = encoder_feats
        h = self.final_layernorm(h[:, -1:] if last_only else h)
        w, b = self.lm_head.weight, self.lm_head.bias
        if vocab_slice is not None:
            w, b = w[vocab_slice[0] : vocab_slice[1]], b[vocab_slice[0] : vocab_slice[1]]
        logits = nn.functional.linear(h, w, b)
        return self._output(logits, routings, routes, seq_bal, h)

    def _output(self, logits, routings, routes, seq_bal, h) -> ModelOutput:
        if routings:
            bal_G = torch.stack([r.balance_G for r in routings]).mean(0)
            stats = RouterStats(
                torch.stack([r.counts_GR for r in routings]),
                torch.stack([r.mean_prob_GR for r in routings]),
                routings[0].tokens_G,
                torch.stack(routes) if routes else None,
            )
        else:
            bal_G = h.new_zeros(N_GROUPS, dtype=torch.float32)
            stats = RouterStats(None, None, None, torch.stack(routes) if routes else None)
        seq_G = torch.stack(seq_bal).mean(0) if seq_bal else torch.zeros_like(bal_G)
        return ModelOutput(logits, bal_G.sum(), bal_G, stats, seq_G.sum(), seq_G)


def build_model(cfg: ModelConfig, layout: VocabLayout) -> UnifiedTransformer:
    """The network for a config and a vocabulary layout."""
    return UnifiedTransformer(cfg, layout.size, layout.mask_id)


@torch.no_grad()
def upcycle_from_dense(moe_model: UnifiedTransformer, dense_model: UnifiedTransformer) -> None:
    """Sparse upcycling: copy every shared weight of a dense model (token_moe=False) and turn
    each dense FFN into the grouped token MoE (:meth:`TokenMoE.upcycle_from_dense`)."""
    state = {k: v for k, v in dense_model.state_dict().items() if ".mlp." not in k}
    missing, unexpected = moe_model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"dense model has weights the MoE model lacks: {unexpected[:5]}")
    for moe_layer, dense_layer in zip(moe_model.layers, dense_model.layers, strict=True):
        if not isinstance(moe_layer.mlp, TokenMoE) or not isinstance(dense_layer.mlp, DenseFFN):
            raise ValueError("upcycling needs a token-MoE model and a dense-FFN model")
        moe_layer.mlp.upcycle_from_dense(dense_layer.mlp)

"""Architecture config of the UniF²ace network and its presets (``tiny``, ``small``, ``paper``).

The config holds the architecture only; vocabulary sizes come from
:class:`unif2ace.vocab.VocabLayout` (the single owner of the token layout), passed to
:func:`unif2ace.model.transformer.build_model` beside the config.

Paper preset (NOTES.md §1, §3, §4): Phi-1.5 shape (24 layers, width 2048, 32 heads of 64,
partial rotary 0.5, parallel residual, LayerNorm, GELU) plus the two MoE levels. The paper
gives 1.8B parameters and N = 8 routed experts of top-K = 4 per group; a full-width expert
(8192 hidden) would give ~14B, so the experts must be fine-grained (DeepSeekMoE-style
segments of the dense FFN). We take expert width 8192 / 16 = 512, which with the sequence-level
resamplers lands near 1.8B (see :func:`unif2ace.model.transformer.parameter_breakdown`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..errors import UserError

# Sequence-level expert kinds per task group (NOTES.md §4). Index = Task id (T2I=0, MMU=1).
SEQ_EXPERTS_T2I: tuple[str, ...] = ("copy", "copy", "zero", "noise")
SEQ_EXPERTS_MMU: tuple[str, ...] = ("copy", "copy", "semantic", "face")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`~unif2ace.model.transformer.UnifiedTransformer`.

    Attributes:
        d_model: residual width D.
        n_layers: number of blocks.
        n_heads: attention heads (head_dim = d_model // n_heads).
        ffn_hidden: hidden width of the dense FFN (the ablation without token MoE, and the
            source of sparse upcycling).
        rotary_fraction: fraction of each head's dims that get rotary embeddings (Phi: 0.5).
        rope_theta: rotary base.
        parallel_residual: Phi-style ``x + attn(ln(x)) + ffn(ln(x))`` if True, else sequential.
        qk_norm: LayerNorm on queries and keys per head (Phi's ``qk_layernorm``).
        attn_impl: "sdpa" (``scaled_dot_product_attention`` with a boolean mask), "math"
            (baddbmm/softmax/bmm with an additive bias; faster on CPU) or "auto" (math on
            CPU, sdpa elsewhere).
        layer_norm_eps: LayerNorm epsilon.
        token_moe: grouped token-level MoE instead of the dense FFN.
        n_routed_experts: routed experts per group (paper 8).
        top_k: routed experts per token (paper 4).
        expert_hidden: hidden width of each expert (shared and routed).
        seq_moe: grouped sequence-level MoE after the token-level MoE.
        seq_top_k: sequence experts per sequence (paper 2 of 4).
        resampler_dim: inner width of the cross-attention resampler S.
        resampler_heads: heads of the resampler.
        noise_tokens: feature tokens the noise embedding F(noise level) produces.
        noise_feature_dim: width of those noise feature tokens.
        semantic_encoder / face_encoder: registry names of the image encoders
            (see :mod:`unif2ace.model.encoders`).
        semantic_feature_dim / face_feature_dim: feature width of those encoders.
        encoder_width: base channel width of the in-project CNN encoders.
        tie_embeddings: share the input embedding with the output head (Phi: no).
    """

    d_model: int = 512
    n_layers: int = 8
    n_heads: int = 8
    ffn_hidden: int = 2048
    rotary_fraction: float = 0.5
    rope_theta: float = 10000.0
    parallel_residual: bool = True
    qk_norm: bool = False
    attn_impl: str = "auto"
    layer_norm_eps: float = 1e-5
    token_moe: bool = True
    n_routed_experts: int = 8
    top_k: int = 4
    expert_hidden: int = 512
    seq_moe: bool = True
    seq_top_k: int = 2
    resampler_dim: int = 128
    resampler_heads: int = 4
    noise_tokens: int = 4
    noise_feature_dim: int = 128
    semantic_encoder: str = "cnn-semantic"
    face_encoder: str = "cnn-identity"
    semantic_feature_dim: int = 128
    face_feature_dim: int = 128
    encoder_width: int = 32
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise UserError(f"d_model {self.d_model} must be divisible by n_heads {self.n_heads}")
        if not 0 < self.top_k <= self.n_routed_experts:
            raise UserError(f"top_k {self.top_k} must be in [1, n_routed_experts]")
        if not 0 < self.seq_top_k <= len(SEQ_EXPERTS_T2I):
            raise UserError(f"seq_top_k {self.seq_top_k} must be in [1, 4]")
        if self.resampler_dim % self.resampler_heads:
            raise UserError("resampler_dim must be divisible by resampler_heads")
        if self.attn_impl not in ("auto", "sdpa", "math"):
            raise UserError(f"attn_impl {self.attn_impl!r}; valid: auto, sdpa, math")
        rot = self.rotary_dim
        if rot % 2 or not 0 <= rot <= self.head_dim:
            raise UserError(f"rotary_fraction {self.rotary_fraction} gives odd rotary dim {rot}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_fraction)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Rebuild from a saved dict; unknown keys are rejected, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown model config keys {unknown}; valid: {sorted(known)}")
        return cls(**d)


def _tiny() -> ModelConfig:
    return ModelConfig(
        d_model=64,
        n_layers=2,
        n_heads=4,
        ffn_hidden=128,
        n_routed_experts=4,
        top_k=2,
        expert_hidden=64,
        resampler_dim=32,
        resampler_heads=2,
        noise_tokens=2,
        noise_feature_dim=32,
        semantic_feature_dim=32,
        face_feature_dim=32,
        encoder_width=8,
    )


def _small() -> ModelConfig:
    # The bundled model: d384, 8 layers, experts = dense 1536 / 8 (paper N = 8, K = 4):
    # 34.2M parameters (68 MB in bf16, "tens of MB"), ~14M active per token, 2.4x fewer
    # training FLOPs per token than ``base`` so it trains further in the same CPU hours.
    return ModelConfig(
        d_model=384, n_heads=6, ffn_hidden=1536, expert_hidden=192, n_routed_experts=8, top_k=4
    )


def _base() -> ModelConfig:
    # TARGETS.md speed reference size (d512, 8 layers): the shape `unif2ace bench` measures.
    # Experts = dense 2048 / 4 (active FFN width 5 x 512); 94.5M parameters. Measured
    # fwd+bwd, batch 8 x 323, bf16 autocast, one thread: MFU 0.57, 1378 tok/cpu-s;
    # expert_hidden=256 gives MFU 0.49 at 1708 tok/cpu-s.
    return ModelConfig()


def _paper() -> ModelConfig:
    return ModelConfig(
        d_model=2048,
        n_layers=24,
        n_heads=32,
        ffn_hidden=8192,
        n_routed_experts=8,
        top_k=4,
        expert_hidden=512,
        resampler_dim=512,
        resampler_heads=8,
        noise_tokens=4,
        noise_feature_dim=512,
        semantic_feature_dim=512,
        face_feature_dim=512,
        encoder_width=64,
    )


PRESETS = {"tiny": _tiny, "small": _small, "base": _base, "paper": _paper}


def model_preset(name: str, **overrides) -> ModelConfig:
    """A named preset, optionally with fields replaced (e.g. ``token_moe=False``)."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; valid: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    return replace(cfg, **overrides) if overrides else cfg

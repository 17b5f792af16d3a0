"""Parameter counts and model FLOPs of a config (the paper preset is built on the meta device).

The paper reports 1.8B parameters for its 24-layer, 2048-wide model (NOTES.md §1).
"""

from __future__ import annotations

import torch

from ..vocab import VocabLayout
from .config import ModelConfig, model_preset
from .transformer import build_model

# Show-o's text vocabulary (Phi-1.5 tokenizer, 50,295 ids) and MAGVIT-v2 codebook (8,192).
PAPER_LAYOUT = VocabLayout(text_vocab_size=50295, codebook_size=8192)

_CATEGORIES = (
    ("embed_tokens.", "embeddings"),
    ("lm_head.", "lm_head"),
    (".self_attn.", "attention"),
    (".mlp.", "token_moe"),
    (".seq_moe.", "seq_moe"),
    ("noise_embedder.", "seq_moe"),
    ("encoders.", "encoders"),
    ("layernorm", "norms"),
)


def parameter_breakdown(model: torch.nn.Module) -> dict[str, int]:
    """Exact parameter count per part (tied weights counted once), plus ``total``."""
    out = {name: 0 for _, name in _CATEGORIES}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        cat = next((c for key, c in _CATEGORIES if key in name or name.startswith(key)), None)
        if cat is None:
            raise ValueError(f"parameter {name} has no category")
        out[cat] += p.numel()
    out["total"] = sum(out.values())
    return out


def preset_parameter_breakdown(
    preset: str = "paper", layout: VocabLayout = PAPER_LAYOUT
) -> dict[str, int]:
    """Build a preset on the meta device (no memory) and return its parameter breakdown."""
    with torch.device("meta"):
        model = build_model(model_preset(preset), layout)
    return parameter_breakdown(model)


def active_params_per_token(cfg: ModelConfig, vocab_size: int) -> int:
    """Weights one token multiplies with in a forward (attention, active experts, head).

    Embedding lookups, norms, biases and the sequence-level resamplers are excluded.
    """
    D = cfg.d_model
    ffn = (1 + cfg.top_k) * 2 * D * cfg.expert_hidden if cfg.token_moe else 2 * D * cfg.ffn_hidden
    router = D * cfg.n_routed_experts if cfg.token_moe else 0
    return cfg.n_layers * (4 * D * D + ffn + router) + D * vocab_size


def training_flops_per_token(cfg: ModelConfig, vocab_size: int, seq_len: int) -> float:
    """Model FLOPs per token of forward+backward (PaLM appendix B): ``6·N + 12·L·D·T``.

    The attention term counts the full T×T score matrix (omni-attention is not causal for
    image rows, and the fused kernel computes every block).
    """
    n = active_params_per_token(cfg, vocab_size)
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.d_model * seq_len

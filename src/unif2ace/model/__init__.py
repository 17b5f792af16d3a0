"""The UniF²ace network (NOTES.md §1, §3, §4): omni-attention Phi-style decoder with grouped
token-level and sequence-level MoE, its caches, the image denoiser for the samplers and
autoregressive text decoding.

Public API::

    cfg = model_preset("small")                 # or "tiny", "paper"; ModelConfig fields
    model = build_model(cfg, layout)            # UnifiedTransformer
    out = model(ids_BT, modality_BT, task_B, noise_level_B=None, encoder_feats=None)
    out.logits_BTV, out.balance_loss, out.balance_loss_G, out.router
    denoiser = make_image_denoiser(model, layout, prompts, use_cache=True, with_uncond=True)
    logits_RNK = denoiser(codes_RN, noise_level_R)
    generate_text(model, layout, codes_BN, questions, max_new_tokens=32, temperature=0.0)
    preset_parameter_breakdown("paper")         # exact counts, built on the meta device
"""

from .config import ModelConfig, model_preset
from .denoiser import ImageDenoiser, make_image_denoiser
from .scale import parameter_breakdown, preset_parameter_breakdown, training_flops_per_token
from .text_decode import TextGeneration, answer_logprob, generate_text, sample_next
from .transformer import ModelOutput, RouterStats, UnifiedTransformer, build_model

__all__ = [
    "ImageDenoiser",
    "ModelConfig",
    "ModelOutput",
    "RouterStats",
    "TextGeneration",
    "UnifiedTransformer",
    "answer_logprob",
    "build_model",
    "generate_text",
    "make_image_denoiser",
    "model_preset",
    "parameter_breakdown",
    "preset_parameter_breakdown",
    "sample_next",
    "training_flops_per_token",
]

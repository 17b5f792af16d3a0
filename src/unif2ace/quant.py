"""Weight-only 8-bit storage for exported models (``unif2ace export --weights-format q8``).

Block quantisation in the style of GGUF's Q8_0: every run of ``BLOCK`` consecutive values
along a weight's last axis is stored as int8 codes ``q = round(w / s)`` with one fp32 scale
``s = max|w| / 127`` per block, under the key ``name + SCALE_SUFFIX``. Loading multiplies
back (:func:`dequantize`) and computes in the model's own dtype; nothing else changes. Each
value's error is at most ``s / 2`` (half a step of its block), and the file is ~0.53× the bf16
one. Only large floating weights whose last axis splits into whole blocks are quantised
(norms, biases, gates and small tensors stay as they are).
"""

from __future__ import annotations

import torch

BLOCK = 64
SCALE_SUFFIX = ".q8_scale"
MIN_NUMEL = 4096
FORMAT = "q8_0"


def quantizable(t: torch.Tensor) -> bool:
    return (
        t.is_floating_point()
        and t.ndim >= 2
        and t.numel() >= MIN_NUMEL
        and t.shape[-1] % BLOCK == 0
    )


def quantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the quantisable weights as int8 codes + per-block fp32 scales."""
    out: dict[str, torch.Tensor] = {}
    memo: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # tied weights stay tied
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"{name!r}: the state dict is already quantised")
        if not quantizable(t):
            out[name] = t
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in memo:
            x = t.detach().float().reshape(*t.shape[:-1], t.shape[-1] // BLOCK, BLOCK)
            scale = x.abs().amax(-1) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = (x / scale[..., None]).round().clamp_(-127, 127).to(torch.int8)
            memo[key] = (q.reshape(t.shape).contiguous(), scale.contiguous())
        out[name], out[name + SCALE_SUFFIX] = memo[key]
    return out


def is_quantized(state: dict[str, torch.Tensor]) -> bool:
    return any(k.endswith(SCALE_SUFFIX) for k in state)


def dequantize(
    state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The weights back from :func:`quantize` (in ``dtype``); other tensors unchanged."""
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(name + SCALE_SUFFIX)
        if scale is None:
            out[name] = t
            continue
        x = t.float().reshape(*t.shape[:-1], t.shape[-1] // BLOCK, BLOCK) * scale[..., None]
        out[name] = x.reshape(t.shape).to(dtype)
    return out

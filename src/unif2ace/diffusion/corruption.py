"""Forward (corruption) process of absorbing discrete diffusion on image codes.

Works in image-code space: clean codes are ints in [0, K); masked positions hold the integer
``mask_token`` (>= K) chosen by the caller (the vocabulary layout is not imported here).

Shape suffixes: B batch, N image positions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unif2ace.diffusion.schedules import MaskSchedule, get_schedule
from unif2ace.errors import UserError

Tensor = torch.Tensor

MASKING_METHODS = ("bernoulli", "exact")


def uniform(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """U[0, 1) draws made on the generator's device, then moved to ``device``.

    Drawing where the generator lives keeps results identical whatever device the tensors
    are on (a CPU generator may drive CUDA tensors).
    """
    gen_device = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gen_device, dtype=dtype)
    return u.to(device) if device is not None else u


@dataclass
class Corruption:
    """A corrupted batch.

    Attributes:
        codes_BN: corrupted codes (long); masked positions hold ``mask_token``.
        mask_BN: bool, True where the position was replaced by ``mask_token``.
        t_B: diffusion time of each sequence, float32 in [t_min, 1].
        mask_ratio_B: gamma(t_B), the schedule's masking probability (float32).
        mask_ratio_rate_B: gamma'(t_B) (float32), needed by ELBO / score-entropy weights.
        noise_level_B: realised fraction of masked positions per sequence (float32); this is
            what the network's Noise expert sees, at training and at sampling alike, so the
            network input is a function of the corrupted codes only.
    """

    codes_BN: Tensor
    mask_BN: Tensor
    t_B: Tensor
    mask_ratio_B: Tensor
    mask_ratio_rate_B: Tensor
    noise_level_B: Tensor


def sample_times(
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    low_discrepancy: bool = True,
    t_min: float = 1e-3,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw one diffusion time per sequence, uniform on [t_min, 1].

    With ``low_discrepancy`` the B times are the stratified set (u0 + i / B) mod 1 for one
    uniform u0 (VDM, Kingma et al. 2021, App. I.1; MDLM's antithetic sampling), which lowers
    the variance of the loss estimate. ``t_min`` > 0 keeps the ELBO weight gamma'/gamma bounded
    (MDLM / SEDD use 1e-3).

    Returns:
        t_B: float32 tensor (B,).
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= t_min < 1.0:
        raise UserError(f"t_min must be in [0, 1), got {t_min}")
    if low_discrepancy:
        u0 = uniform((1,), generator, device)
        offsets = torch.arange(batch_size, device=u0.device, dtype=torch.float32) / batch_size
        u_B = torch.remainder(u0 + offsets, 1.0)
    else:
        u_B = uniform((batch_size,), generator, device)
    return t_min + (1.0 - t_min) * u_B


def mask_codes(
    codes_BN: Tensor,
    mask_ratio_B: Tensor,
    *,
    mask_token: int,
    generator: torch.Generator | None = None,
    method: str = "bernoulli",
) -> tuple[Tensor, Tensor]:
    """Replace codes by ``mask_token`` with probability ``mask_ratio_B`` per sequence.

    ``method="bernoulli"``: each position independently (the absorbing forward process
    q_t(x_t | x_0) of SEDD / MDLM; the ELBO weights assume it). ``method="exact"``: exactly
    clamp(round(gamma * N), 1, N) uniformly chosen positions per sequence (MaskGIT / Show-o
    training; at least one position is masked so every sequence gives a loss term).

    Returns:
        (masked codes_BN long, mask_BN bool)
    """
    if method not in MASKING_METHODS:
        raise UserError(f"unknown masking method {method!r}; choose one of: {MASKING_METHODS}")
    batch, n = codes_BN.shape
    u_BN = uniform((batch, n), generator, codes_BN.device)
    ratio_B1 = mask_ratio_B.to(device=codes_BN.device, dtype=torch.float32)[:, None]
    if method == "bernoulli":
        mask_BN = u_BN < ratio_B1
    else:
        count_B1 = torch.round(ratio_B1 * n).clamp(1, n).long()
        rank_BN = torch.argsort(torch.argsort(u_BN, dim=1), dim=1)  # uniform random ranks
        mask_BN = rank_BN < count_B1
    masked_BN = torch.where(mask_BN, torch.full_like(codes_BN, mask_token), codes_BN)
    return masked_BN, mask_BN


def corrupt(
    codes_BN: Tensor,
    *,
    mask_token: int,
    schedule: str | MaskSchedule = "cosine",
    generator: torch.Generator | None = None,
    t_B: Tensor | None = None,
    method: str = "bernoulli",
    low_discrepancy: bool = True,
    t_min: float = 1e-3,
) -> Corruption:
    """Sample t per sequence (unless ``t_B`` is given) and mask codes with probability gamma(t).

    Args:
        codes_BN: clean codes, long in [0, K).
        mask_token: integer used for masked positions (>= K; from the vocabulary owner).
        schedule: schedule name or object (see ``schedules.SCHEDULE_NAMES``).
        generator: explicit randomness; same generator state => same corruption.
        t_B: optional fixed times (B,) in [0, 1].
        method: "bernoulli" (default) or "exact" (see ``mask_codes``).
        low_discrepancy, t_min: see ``sample_times``.
    """
    if codes_BN.dim() != 2:
        raise UserError(f"codes must have shape (B, N), got {tuple(codes_BN.shape)}")
    sched = get_schedule(schedule)
    if t_B is None:
        t_B = sample_times(
            codes_BN.shape[0],
            generator=generator,
            low_discrepancy=low_discrepancy,
            t_min=t_min,
            device=codes_BN.device,
        )
    t_B = t_B.to(device=codes_BN.device, dtype=torch.float32)
    gamma_B = sched.mask_ratio(t_B)
    masked_BN, mask_BN = mask_codes(
        codes_BN, gamma_B, mask_token=mask_token, generator=generator, method=method
    )
    return Corruption(
        codes_BN=masked_BN,
        mask_BN=mask_BN,
        t_B=t_B,
        mask_ratio_B=gamma_B,
        mask_ratio_rate_B=sched.mask_ratio_rate(t_B),
        noise_level_B=mask_BN.float().mean(dim=1),
    )


@dataclass
class CorruptionConfig:
    """Forward-process settings (Show-o / MaskGIT default: cosine schedule)."""

    schedule: str = "cosine"
    method: str = "bernoulli"
    low_discrepancy: bool = True
    t_min: float = 1e-3


def build_corruption(cfg: CorruptionConfig) -> Callable[..., Corruption]:
    """``corrupt`` with the config bound; call as ``f(codes_BN, mask_token=..., generator=...)``."""
    get_schedule(cfg.schedule)  # validate the name now, not at the first step
    if cfg.method not in MASKING_METHODS:
        raise UserError(f"unknown masking method {cfg.method!r}; choose one of: {MASKING_METHODS}")
    return functools.partial(
        corrupt,
        schedule=cfg.schedule,
        method=cfg.method,
        low_discrepancy=cfg.low_discrepancy,
        t_min=cfg.t_min,
    )

"""Samplers for masked discrete diffusion over image codes.

* ``maskgit_sample``: MaskGIT's confidence-based iterative decoding (Chang et al. 2022,
  Sec. 3.2; Show-o's ``t2i_generate``) with a cosine schedule, annealed Gumbel noise on the
  confidences and classifier-free guidance.
* ``ancestral_sample``: MDLM's ancestral sampler for the absorbing process (Sahoo et al.
  2024, Sec. 3.2 / their ``_ddpm_caching_update``) with carry-over unmasking and network-call
  skipping when a step changed nothing.

Contract with the network (fixed): ``denoiser(codes_BN, noise_level_B) -> logits_BNK`` over
the K codes only; ``noise_level_B`` is the realised fraction of masked positions of each row
(the same quantity ``corruption.Corruption.noise_level_B`` gives at training). With guidance
on, the denoiser is called once per step with 2B rows ``cat([x, x])``: the first B rows are
conditional, the next B unconditional (the model builds its prompt cache that way), and the
logits are combined as Show-o does: ``(1 + w) * cond - w * uncond``.

Shape suffixes: B batch, N image positions, K codebook size, M selected positions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from unif2ace.diffusion.corruption import uniform
from unif2ace.diffusion.schedules import MaskSchedule, get_schedule
from unif2ace.errors import UserError

Tensor = torch.Tensor
Denoiser = Callable[[Tensor, Tensor], Tensor]

GUIDANCE_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class SamplerOutput:
    """Result of a sampler run.

    Attributes:
        codes_BN: final codes, long in [0, K) (none masked).
        num_network_calls: how many times the denoiser was called (a guided call with 2B rows
            counts once).
        num_steps: steps actually run (a sampler stops early once nothing is masked).
        history: codes after each step (``return_history=True``), else None.
    """

    codes_BN: Tensor
    num_network_calls: int
    num_steps: int
    history: list[Tensor] | None = field(default=None)


def guidance_scale_at(scale: float, schedule: str, progress: float) -> float:
    """Guidance scale at sampling progress in (0, 1] (fraction of steps done after this one).

    "constant": w; "linear": w * progress; "cosine": w * (1 - cos(pi/2 * progress)) — the
    ramps used by MUSE-style samplers to guide late steps more than early ones.
    """
    if schedule == "constant":
        return scale
    if schedule == "linear":
        return scale * progress
    if schedule == "cosine":
        return scale * (1.0 - math.cos(0.5 * math.pi * progress))
    raise UserError(
        f"unknown guidance schedule {schedule!r}; choose one of: {', '.join(GUIDANCE_SCHEDULES)}"
    )


def combine_guidance(cond_MK: Tensor, uncond_MK: Tensor | None, scale: float) -> Tensor:
    """Show-o's classifier-free guidance ``(1 + w) * cond - w * uncond`` in float32.

    Returns ``cond`` (upcast) when ``uncond`` is None. Samplers apply it to the gathered
    masked positions only, so later steps with few masked positions cost little.
    """
    if uncond_MK is None:
        return cond_MK.float()
    return (1.0 + scale) * cond_MK.float() - scale * uncond_MK.float()


def sample_categorical(
    logits_MK: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw one code per row from softmax(logits / temperature), optionally top-k filtered.

    Temperature 0 is argmax and draws no random numbers. Otherwise sampling is by inverse CDF
    with one float64 uniform per row (``inverse_cdf``): exact up to float32 rounding of the
    probabilities, and cheaper than Gumbel-max (no K random draws and logs per row) without
    float32 Gumbel-max truncation, which lowers diversity (Zheng et al. 2024, arXiv 2409.02908).

    Returns:
        codes_M: long (M,).
        logp_M: float32 log-probability of each drawn code under the distribution it was drawn
            from (the untempered softmax for temperature 0); MaskGIT's confidence.
    """
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    z_MK = logits_MK.float()
    if temperature == 0 or z_MK.shape[0] == 0:
        idx_M = z_MK.argmax(dim=-1)
        logp_M = z_MK.gather(1, idx_M[:, None]).squeeze(1) - torch.logsumexp(z_MK, dim=-1)
        return idx_M, logp_M
    if temperature != 1.0:
        z_MK = z_MK / temperature
    if top_k is not None and top_k < z_MK.shape[-1]:
        kth_M1 = z_MK.topk(top_k, dim=-1).values[:, -1:]
        z_MK = z_MK.masked_fill(z_MK < kth_M1, float("-inf"))
    p_MK = torch.softmax(z_MK, dim=-1)
    u_M = uniform((z_MK.shape[0],), generator, z_MK.device, torch.float64)
    idx_M = inverse_cdf(p_MK, u_M)
    logp_M = torch.log(p_MK.gather(1, idx_M[:, None]).squeeze(1).clamp_min(1e-38))
    return idx_M, logp_M


_CDF_BLOCK = 128


def inverse_cdf(weights_MK: Tensor, u_M: Tensor) -> Tensor:
    """Index i of each row with cdf(i - 1) <= u * total < cdf(i), for weights >= 0.

    Two-level search, so no float64 copy of the whole (M, K) tensor is needed: float32 sums
    of blocks of 128 weights, a float64 cumulative sum over the blocks, then a float64
    cumulative sum inside the one chosen block. Zero-weight entries are never returned (the
    search is right-continuous and rounding at a block's end is clamped to its last positive
    entry), so top-k-filtered codes cannot be drawn.

    Args:
        weights_MK: unnormalised probabilities (float), at least one positive per row.
        u_M: float64 uniforms in [0, 1).
    Returns:
        idx_M: long (M,).
    """
    m, k = weights_MK.shape
    blk = min(_CDF_BLOCK, k)
    nb = -(-k // blk)
    w_MBC = torch.nn.functional.pad(weights_MK, (0, nb * blk - k)).view(m, nb, blk)
    bsum_MB = w_MBC.sum(dim=-1).double()
    bcdf_MB = bsum_MB.cumsum(dim=-1)
    target_M1 = u_M.double()[:, None] * bcdf_MB[:, -1:]
    last_block_M1 = (bcdf_MB < bcdf_MB[:, -1:]).sum(dim=-1, keepdim=True)
    j_M1 = torch.searchsorted(bcdf_MB, target_M1, right=True).minimum(last_block_M1)
    before_M1 = torch.where(j_M1 > 0, bcdf_MB.gather(1, (j_M1 - 1).clamp_min(0)), 0.0)
    rest_M1 = target_M1 - before_M1
    inner_MC = w_MBC.gather(1, j_M1[:, :, None].expand(m, 1, blk)).squeeze(1).double()
    inner_MC = inner_MC.cumsum(dim=-1)
    last_M1 = (inner_MC < inner_MC[:, -1:]).sum(dim=-1, keepdim=True)
    i_M1 = torch.searchsorted(inner_MC, rest_M1, right=True).minimum(last_M1)
    return (j_M1 * blk + i_M1).squeeze(1)


def _validate(init_codes_BN: Tensor, mask_token: int, codebook_size: int, steps: int) -> None:
    if init_codes_BN.dim() != 2 or init_codes_BN.dtype != torch.long:
        raise UserError("initial codes must be a long tensor of shape (B, N)")
    if mask_token < codebook_size:
        raise UserError(f"mask_token ({mask_token}) must be >= codebook_size ({codebook_size})")
    if steps < 1:
        raise UserError(f"num_steps must be >= 1, got {steps}")
    known = init_codes_BN[init_codes_BN != mask_token]
    if known.numel() and (known.min() < 0 or known.max() >= codebook_size):
        raise UserError(f"known codes must lie in [0, {codebook_size}) or equal mask_token")


class _GuidedDenoiser:
    """Calls the denoiser (once per step, 2B rows with guidance) and counts the calls."""

    def __init__(self, denoiser: Denoiser, mask_token: int, codebook_size: int, guidance: bool):
        self.denoiser, self.mask_token, self.k = denoiser, mask_token, codebook_size
        self.guidance, self.calls = guidance, 0

    def __call__(self, codes_BN: Tensor) -> tuple[Tensor, Tensor | None]:
        """Return (cond logits_BNK, uncond logits_BNK or None) in the denoiser's dtype."""
        batch, n = codes_BN.shape
        noise_B = (codes_BN == self.mask_token).float().mean(dim=1)
        rows = 2 * batch if self.guidance else batch
        x_RN = torch.cat([codes_BN, codes_BN]) if self.guidance else codes_BN
        noise_R = torch.cat([noise_B, noise_B]) if self.guidance else noise_B
        logits_RNK = self.denoiser(x_RN, noise_R)
        self.calls += 1
        if tuple(logits_RNK.shape) != (rows, n, self.k):
            raise UserError(
                f"denoiser returned logits of shape {tuple(logits_RNK.shape)}, "
                f"expected {(rows, n, self.k)} (logits over the K codes only)"
            )
        if self.guidance:
            return logits_RNK[:batch], logits_RNK[batch:]
        return logits_RNK, None


def _gumbel(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    u = uniform(shape, generator, device).clamp(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def _maskgit_step(
    codes_BN: Tensor,
    logits: tuple[Tensor, Tensor | None],
    n_keep_masked_B: Tensor,
    *,
    mask_token: int,
    guidance_scale: float,
    temperature: float,
    top_k: int | None,
    gumbel_scale: float,
    generator: torch.Generator | None,
) -> Tensor:
    """One MaskGIT step: sample every masked position, re-mask the least confident ones.

    Confidence = log p(sampled code) + gumbel_scale * Gumbel noise (MaskGIT's
    ``mask_by_random_topk``); known positions get +inf, so they are never re-masked and keep
    their codes. ``n_keep_masked_B`` must be < the number of masked positions of each row.
    """
    b_M, n_M = (codes_BN == mask_token).nonzero(as_tuple=True)
    cond_BNK, uncond_BNK = logits
    uncond_MK = None if uncond_BNK is None else uncond_BNK[b_M, n_M]
    logits_MK = combine_guidance(cond_BNK[b_M, n_M], uncond_MK, guidance_scale)
    sampled_M, logp_M = sample_categorical(
        logits_MK, temperature=temperature, top_k=top_k, generator=generator
    )
    if gumbel_scale > 0:
        logp_M = logp_M + gumbel_scale * _gumbel(tuple(logp_M.shape), generator, logp_M.device)
    conf_BN = torch.full(codes_BN.shape, float("inf"), device=codes_BN.device)
    conf_BN[b_M, n_M] = logp_M
    order_BN = torch.argsort(conf_BN, dim=1, stable=True)
    rank_BN = torch.empty_like(order_BN).scatter_(
        1, order_BN, torch.arange(codes_BN.shape[1], device=codes_BN.device).expand_as(order_BN)
    )
    new_BN = codes_BN.clone()
    new_BN[b_M, n_M] = sampled_M
    return new_BN.masked_fill(rank_BN < n_keep_masked_B[:, None], mask_token)


@torch.no_grad()
def maskgit_sample(
    denoiser: Denoiser,
    init_codes_BN: Tensor,
    *,
    mask_token: int,
    codebook_size: int,
    num_steps: int = 16,
    schedule: str | MaskSchedule = "cosine",
    temperature: float = 1.0,
    top_k: int | None = None,
    choice_temperature: float = 4.5,
    guidance_scale: float = 0.0,
    guidance_schedule: str = "constant",
    guidance: bool | None = None,
    generator: torch.Generator | None = None,
    return_history: bool = False,
) -> SamplerOutput:
    """MaskGIT confidence sampler (Chang et al. 2022, Sec. 3.2; Show-o ``t2i_generate``).

    At step s of S (progress r = (s + 1) / S) every masked position is sampled; then the
    floor(n0 * gamma(1 - r)) least confident of the freshly sampled positions are masked again
    (n0 = masked positions at the start, gamma the schedule: cosine gives MaskGIT's
    cos(pi r / 2)). At least one position is committed per step; the last step commits all.
    Gumbel noise on the confidences has scale ``choice_temperature * (1 - r)``, recomputed from
    the step index every step (Show-o reassigns the annealed value to its running temperature,
    so its annealing compounds; here it does not).

    Args:
        denoiser: ``(codes_BN, noise_level_B) -> logits_BNK`` (module docstring).
        init_codes_BN: start codes; ``mask_token`` where unknown (all masked for generation,
            partly known for inpainting). Known codes are never changed.
        mask_token, codebook_size: mask id (>= K) and K.
        temperature, top_k: token sampling (temperature 0 = argmax).
        choice_temperature: initial Gumbel scale on confidences (MaskGIT: 4.5).
        guidance_scale, guidance_schedule: CFG weight w and its per-step ramp.
        guidance: force CFG on/off; default on iff guidance_scale > 0.
        generator: explicit randomness; same generator state => identical output.
    """
    _validate(init_codes_BN, mask_token, codebook_size, num_steps)
    sched = get_schedule(schedule)
    use_cfg = guidance_scale > 0 if guidance is None else guidance
    net = _GuidedDenoiser(denoiser, mask_token, codebook_size, use_cfg)
    codes_BN = init_codes_BN.clone()
    n0_B = (codes_BN == mask_token).sum(dim=1)
    history: list[Tensor] | None = [] if return_history else None
    steps = 0
    for step in range(num_steps):
        masked_BN = codes_BN == mask_token
        if not bool(masked_BN.any()):
            break
        progress = (step + 1) / num_steps
        logits = net(codes_BN)
        w = guidance_scale_at(guidance_scale, guidance_schedule, progress)
        gamma_next = float(sched.mask_ratio(torch.tensor(1.0 - progress, dtype=torch.float64)))
        keep_B = torch.floor(n0_B.double() * gamma_next).long()
        keep_B = torch.minimum(keep_B, masked_BN.sum(dim=1) - 1).clamp_min(0)
        codes_BN = _maskgit_step(
            codes_BN,
            logits,
            keep_B,
            mask_token=mask_token,
            guidance_scale=w,
            temperature=temperature,
            top_k=top_k,
            gumbel_scale=choice_temperature * (1.0 - progress),
            generator=generator,
        )
        steps += 1
        if history is not None:
            history.append(codes_BN.clone())
    return SamplerOutput(codes_BN, net.calls, steps, history)


@torch.no_grad()
def ancestral_sample(
    denoiser: Denoiser,
    init_codes_BN: Tensor,
    *,
    mask_token: int,
    codebook_size: int,
    num_steps: int = 64,
    schedule: str | MaskSchedule = "cosine",
    temperature: float = 1.0,
    top_k: int | None = None,
    guidance_scale: float = 0.0,
    guidance_schedule: str = "constant",
    guidance: bool | None = None,
    skip_unchanged: bool = True,
    generator: torch.Generator | None = None,
    return_history: bool = False,
) -> SamplerOutput:
    """Ancestral sampler of the absorbing process (MDLM, Sahoo et al. 2024, Eq. 7-8).

    Time runs t_i = 1 - i / S. From t to s < t each masked position is unmasked with
    probability (alpha_s - alpha_t) / (1 - alpha_t) = (gamma(t) - gamma(s)) / gamma(t) (1 at
    the last step, so none stay masked), its code drawn from the denoiser's distribution;
    unmasked positions are carried over (never re-masked). When the previous step unmasked
    nothing, the network input (codes and noise level) is unchanged, so the cached logits are
    reused instead of calling the network (MDLM's ``p_x0_cache``); the random draws do not
    depend on the cache, so ``skip_unchanged`` changes the call count, never the output. The
    conditional and unconditional logits are cached separately, so a per-step guidance ramp
    stays exact. The whole batch is re-evaluated when any row changed (the model's prompt
    cache holds all 2B rows).

    Args: as ``maskgit_sample``; ``skip_unchanged`` enables the call skipping.
    """
    _validate(init_codes_BN, mask_token, codebook_size, num_steps)
    sched = get_schedule(schedule)
    use_cfg = guidance_scale > 0 if guidance is None else guidance
    net = _GuidedDenoiser(denoiser, mask_token, codebook_size, use_cfg)
    codes_BN = init_codes_BN.clone()
    history: list[Tensor] | None = [] if return_history else None
    cached: tuple[Tensor, Tensor | None] | None = None
    changed, steps = True, 0
    for i in range(num_steps):
        masked_BN = codes_BN == mask_token
        if not bool(masked_BN.any()):
            break
        if cached is None or changed or not skip_unchanged:
            cached = net(codes_BN)
        progress = (i + 1) / num_steps
        w = guidance_scale_at(guidance_scale, guidance_schedule, progress)
        times = torch.tensor([1.0 - i / num_steps, 1.0 - progress], dtype=torch.float64)
        gamma_t, gamma_s = (float(g) for g in sched.mask_ratio(times))
        p_unmask = 1.0 if gamma_t <= 0 else (gamma_t - gamma_s) / gamma_t
        u_BN = uniform(tuple(codes_BN.shape), generator, codes_BN.device, torch.float64)
        b_M, n_M = (masked_BN & (u_BN < p_unmask)).nonzero(as_tuple=True)
        uncond_MK = None if cached[1] is None else cached[1][b_M, n_M]
        logits_MK = combine_guidance(cached[0][b_M, n_M], uncond_MK, w)
        values_M, _ = sample_categorical(
            logits_MK, temperature=temperature, top_k=top_k, generator=generator
        )
        codes_BN = codes_BN.clone()
        codes_BN[b_M, n_M] = values_M
        changed = b_M.numel() > 0
        steps += 1
        if history is not None:
            history.append(codes_BN.clone())
    return SamplerOutput(codes_BN, net.calls, steps, history)


SAMPLERS: dict[str, Callable[..., SamplerOutput]] = {
    "maskgit": maskgit_sample,
    "ancestral": ancestral_sample,
}


@dataclass
class SamplerConfig:
    """Sampler settings; fields a sampler does not use are ignored by it."""

    name: str = "maskgit"
    num_steps: int = 16
    schedule: str = "cosine"
    temperature: float = 1.0
    top_k: int | None = None
    choice_temperature: float = 4.5  # maskgit only
    guidance_scale: float = 0.0
    guidance_schedule: str = "constant"
    skip_unchanged: bool = True  # ancestral only


def build_sampler(cfg: SamplerConfig) -> Callable[..., SamplerOutput]:
    """The named sampler with the config bound; call as
    ``f(denoiser, init_codes_BN, mask_token=..., codebook_size=..., generator=...)``.

    Raises:
        UserError: unknown sampler, schedule or guidance-schedule name.
    """
    if cfg.name not in SAMPLERS:
        raise UserError(f"unknown sampler {cfg.name!r}; choose one of: {', '.join(SAMPLERS)}")
    get_schedule(cfg.schedule)
    guidance_scale_at(cfg.guidance_scale, cfg.guidance_schedule, 1.0)
    kwargs = dict(
        num_steps=cfg.num_steps,
        schedule=cfg.schedule,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        guidance_scale=cfg.guidance_scale,
        guidance_schedule=cfg.guidance_schedule,
    )
    if cfg.name == "maskgit":
        kwargs["choice_temperature"] = cfg.choice_temperature
    else:
        kwargs["skip_unchanged"] = cfg.skip_unchanged
    return functools.partial(SAMPLERS[cfg.name], **kwargs)

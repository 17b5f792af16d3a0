"""Masking schedules for absorbing ([MASK]) discrete diffusion, behind a small registry.

Time convention (MDLM / SEDD): t in [0, 1]; t = 0 is clean data, t = 1 is fully masked.
A schedule gives the **mask ratio** gamma(t) (the probability that a token is [MASK] at time t),
monotone with gamma(0) = 0 and gamma(1) = 1, and its derivative gamma'(t).

MaskGIT (Chang et al. 2022, Sec. 3.2) writes the same functions in terms of the sampling
progress r = 1 - t: "cosine" gamma(r) = cos(pi r / 2), "square" 1 - r^2, "cubic" 1 - r^3,
"sqrt" 1 - sqrt(r), "linear" 1 - r. Show-o trains and samples with the cosine schedule.

Quantities of the absorbing process derived from gamma (SEDD, Lou et al. 2023, Sec. 3.3;
MDLM, Sahoo et al. 2024, Sec. 3):
  keep-probability      alpha_bar(t) = 1 - gamma(t) = exp(-sigma_bar(t))
  total noise           sigma_bar(t) = -log(1 - gamma(t))
  noise rate            sigma(t) = d sigma_bar / dt = gamma'(t) / (1 - gamma(t))
  true score ratio      rho(t) = alpha_bar / (1 - alpha_bar) = (1 - gamma) / gamma
  ELBO weight           sigma(t) * rho(t) = gamma'(t) / gamma(t)   (finite wherever gamma > 0)

Shape suffixes: _B batch (one time per sequence); any shape works, the functions are elementwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unif2ace.errors import UserError

Tensor = torch.Tensor

# Mask ratios are clamped into [GAMMA_EPS, 1 - GAMMA_EPS] wherever a quantity divides by gamma
# or by 1 - gamma (rates, ratios, weights), so t -> 0 and t -> 1 stay finite. Computed in float64.
GAMMA_EPS = 1e-6


@dataclass(frozen=True)
class MaskSchedule:
    """A masking schedule gamma(t) with its derivative; all methods are elementwise on t.

    Args:
        name: registry name.
        gamma_fn: t -> gamma(t), float tensor in, same-shape tensor out.
        dgamma_fn: t -> gamma'(t).
    """

    name: str
    gamma_fn: Callable[[Tensor], Tensor]
    dgamma_fn: Callable[[Tensor], Tensor]

    def mask_ratio(self, t: Tensor) -> Tensor:
        """gamma(t): probability that a token is masked at time t; clamped into [0, 1]."""
        return self.gamma_fn(_as_float(t)).clamp(0.0, 1.0)

    def mask_ratio_rate(self, t: Tensor) -> Tensor:
        """gamma'(t) >= 0 (finite on [0, 1) for every registered schedule; sqrt clamps t)."""
        return self.dgamma_fn(_as_float(t)).clamp_min(0.0)

    def keep_prob(self, t: Tensor) -> Tensor:
        """alpha_bar(t) = 1 - gamma(t) (MDLM's alpha_t)."""
        return 1.0 - self.mask_ratio(t)

    def total_noise(self, t: Tensor) -> Tensor:
        """sigma_bar(t) = -log(1 - gamma(t)), SEDD's total noise (gamma clamped below 1)."""
        g = _clamp_gamma(self.mask_ratio(t))
        return -torch.log1p(-g)

    def noise_rate(self, t: Tensor) -> Tensor:
        """sigma(t) = gamma'(t) / (1 - gamma(t)), the absorbing rate Q_t = sigma(t) Q_absorb."""
        g = _clamp_gamma(self.mask_ratio(t).double())
        return (self.mask_ratio_rate(t).double() / (1.0 - g)).to(_float_dtype(t))

    def true_ratio(self, t: Tensor) -> Tensor:
        """rho(t) = alpha_bar / (1 - alpha_bar): the concrete-score ratio of a masked position."""
        g = _clamp_gamma(self.mask_ratio(t).double())
        return ((1.0 - g) / g).to(_float_dtype(t))

    def elbo_weight(self, t: Tensor) -> Tensor:
        """sigma(t) * rho(t) = gamma'(t) / gamma(t): MDLM's continuous-time ELBO weight."""
        return elbo_weight(self.mask_ratio(t), self.mask_ratio_rate(t))


def elbo_weight(mask_ratio: Tensor, mask_ratio_rate: Tensor) -> Tensor:
    """gamma' / gamma computed in float64 with gamma clamped to [GAMMA_EPS, 1 - GAMMA_EPS].

    Equals MDLM's weight -alpha'_t / (1 - alpha_t) (Sahoo et al. 2024, Eq. 10) and SEDD's
    sigma(t) * rho(t) for the absorbing process. Returned in float32.
    """
    g = _clamp_gamma(mask_ratio.double())
    return (mask_ratio_rate.double() / g).float()


def _clamp_gamma(g: Tensor) -> Tensor:
    return g.clamp(GAMMA_EPS, 1.0 - GAMMA_EPS)


def _float_dtype(t: Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() and t.dtype == torch.float64 else torch.float32


def _as_float(t: Tensor) -> Tensor:
    """Schedules are evaluated in float32 (float64 inputs stay float64); bf16 t is upcast."""
    t = torch.as_tensor(t)
    return t.to(_float_dtype(t))


_HALF_PI = math.pi / 2


def _cosine() -> MaskSchedule:
    # MaskGIT / Show-o: gamma(r) = cos(pi r / 2) with r = 1 - t  =>  gamma(t) = sin(pi t / 2).
    return MaskSchedule(
        "cosine",
        lambda t: torch.sin(_HALF_PI * t),
        lambda t: _HALF_PI * torch.cos(_HALF_PI * t),
    )


def _linear() -> MaskSchedule:
    # MDLM's linear schedule alpha_t = 1 - t (also SEDD's log-linear noise without its eps).
    return MaskSchedule("linear", lambda t: t.clone(), torch.ones_like)


def _square() -> MaskSchedule:
    # MaskGIT "square": 1 - r^2  =>  gamma(t) = 1 - (1 - t)^2.
    return MaskSchedule("square", lambda t: 1.0 - (1.0 - t) ** 2, lambda t: 2.0 * (1.0 - t))


def _cubic() -> MaskSchedule:
    # MaskGIT "cubic": 1 - r^3  =>  gamma(t) = 1 - (1 - t)^3.
    return MaskSchedule("cubic", lambda t: 1.0 - (1.0 - t) ** 3, lambda t: 3.0 * (1.0 - t) ** 2)


def _sqrt() -> MaskSchedule:
    # MaskGIT "sqrt": 1 - sqrt(r)  =>  gamma(t) = 1 - sqrt(1 - t); gamma'(1) is infinite, so the
    # derivative clamps 1 - t at GAMMA_EPS (gamma' <= 500 there).
    return MaskSchedule(
        "sqrt",
        lambda t: 1.0 - torch.sqrt((1.0 - t).clamp_min(0.0)),
        lambda t: 0.5 / torch.sqrt((1.0 - t).clamp_min(GAMMA_EPS)),
    )


_REGISTRY: dict[str, Callable[[], MaskSchedule]] = {
    "cosine": _cosine,
    "linear": _linear,
    "square": _square,
    "cubic": _cubic,
    "sqrt": _sqrt,
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_schedule(name: str | MaskSchedule) -> MaskSchedule:
    """Return the schedule registered under ``name`` (a MaskSchedule passes through).

    Raises:
        UserError: unknown name; the message lists the valid names.
    """
    if isinstance(name, MaskSchedule):
        return name
    if name not in _REGISTRY:
        raise UserError(
            f"unknown masking schedule {name!r}; choose one of: {', '.join(SCHEDULE_NAMES)}"
        )
    return _REGISTRY[name]()

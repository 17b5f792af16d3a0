r"""D3Diff loss = masked-generative loss + alpha * score-entropy loss (UniF²ace, NOTES.md §2).

Shape suffixes: B batch, N image positions, K codebook size, M masked positions (flattened).

Derivation of the posterior-form score (the constant the paper leaves implicit)
------------------------------------------------------------------------------
Absorbing forward process at one position with clean code k (SEDD Sec. 3.3, MDLM Sec. 3):
``q_t(k | k) = alpha_bar``, ``q_t(MASK | k) = 1 - alpha_bar = gamma``. The concrete score of a
masked position i is the ratio ``s(x_t)_y = p_t(x_t^{i<-y}) / p_t(x_t)`` for codes y in [0, K).
Because q_t factorises over positions,

    p_t(x_t^{i<-y}) = sum_{x0} q_t(x_t^{i<-y} | x0) p_0(x0)
                    = sum_{x0: x0^i = y} [alpha_bar / (1 - alpha_bar)] q_t(x_t | x0) p_0(x0)
                    = rho * p_t(x_t) * p(x0^i = y | x_t),        rho = alpha_bar / (1 - alpha_bar),

(Ou et al. 2024, "RADD", Thm. 1). Hence the exact score in terms of the mask posterior is

    s_theta(x_t)_y = p_theta(x0^i = y | x_t) * q_t(y | y) / q_t(MASK | y)
                   = rho(t) * p_theta(x0^i = y | x_t).

The paper's Bayes link ``s_theta = p_theta(x0 | x_t) / q_t(x_t | x0)`` divides by
``q_t(MASK | y) = 1 - alpha_bar`` only; it equals ``s_exact / alpha_bar`` and cannot reach the
true ratio for t > 0. ``score_form="posterior"`` (default) uses the exact constant rho;
``"posterior_paper"`` is the paper's literal form; ``"free"`` is an unnormalised score
``s_y = rho * exp(logit_y) / K`` (SEDD's "scale_by_sigma" parametrisation: log s = logits
- log(e^sigma_bar - 1) - log K, so exp(logits) is the free part and zero logits start near
the true ratio's mass).

Denoising score entropy (SEDD Sec. 3.2) of a masked position with clean code k, with true
ratios ``r_y = rho * [y = k]`` over the K non-mask codes and ``K(a) = a (log a - 1)``:

    DSE = sum_y [ s_y - r_y log s_y + K(r_y) ].

Writing ``s_y = rho * exp(u_y)`` (u = log s - log rho, the score relative to the true ratio):

    DSE = rho * D(u),   D(u) = sum_y exp(u_y) - u_k - 1
                             = sum_{y != k} exp(u_y) + (exp(u_k) - 1 - u_k)  >= 0,

zero iff u_k = 0 and u_y = -inf elsewhere, i.e. s = r. The continuous-time loss weights it
with the absorbing rate sigma(t) = gamma'/(1 - gamma) (SEDD losses.py multiplies by dsigma):
``sigma(t) * rho(t) = gamma'(t) / gamma(t)`` (finite where sigma and rho are not), so the
per-position score loss is ``(gamma'/gamma) * D(u)``. Closed forms:

  * posterior:        u = log p  =>  D = -log p_theta(k)  (a weighted cross-entropy: the
                      score-entropy bound equals MDLM's ELBO, the constants cancel exactly);
  * posterior_paper:  u = log p - log alpha_bar  =>  D = -log p_theta(k) + 1/alpha_bar - 1
                      + log alpha_bar (the same weighted CE plus a theta-free constant >= 0).

Numerics: only masked rows are gathered and upcast to float32. The posterior forms use the
closed forms above (one log-softmax shared with the mask loss; the tests check them against
the general ``score_entropy``); the free form evaluates D by logsumexp in the split form above
(both parts >= 0 by construction), with u clamped above at ``U_MAX`` so exp cannot overflow.
gamma is clamped to [1e-6, 1 - 1e-6] in float64 for every weight.

Reductions (how the sum over masked positions is normalised):
  * "masked_mean":  sum / number of masked positions in the batch (Show-o / MaskGIT CE);
  * "token_mean":   sum / (B * N): the per-token Monte-Carlo ELBO estimate (MDLM);
  * "sequence_sum": sum / B: per-sequence sum as in SEDD's losses.py. This is the default for
    the score term: with N = 256 image tokens it makes the score term ~N x the per-token
    mask loss, matching the paper's "score term ~200x larger" and its alpha = 0.01.
All three are independent of how a batch is composed (a batch of identical rows gives the
same value as one row); "masked_mean" weights rows by their number of masked positions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from unif2ace.diffusion.schedules import GAMMA_EPS, elbo_weight
from unif2ace.errors import UserError

Tensor = torch.Tensor

MODES = ("d3diff", "mask_only", "score_only")
SCORE_FORMS = ("posterior", "posterior_paper", "free")
MASK_WEIGHTINGS = ("none", "elbo")
REDUCTIONS = ("masked_mean", "token_mean", "sequence_sum")
U_MAX = 60.0  # exp(60) ~ 1e26: far above any useful score, far below float32 overflow


@dataclass
class LossOutput:
    """Every component of the D3Diff loss (named, never a tuple).

    Attributes:
        loss: the total to backpropagate (scalar).
        mask_loss: masked-generative loss (scalar; detached when ``mode="score_only"``).
        score_loss: score-entropy loss (scalar, already weighted by gamma'/gamma, *not* by
            alpha; detached when ``mode="mask_only"``).
        mask_nll: unweighted mean CE over masked positions (detached diagnostic).
        mask_accuracy: argmax accuracy over masked positions (detached).
        num_masked: number of masked positions in the batch (long scalar).
        mean_mask_ratio: mean gamma(t) over the batch (detached).
        mean_score_weight: mean gamma'/gamma over the batch (detached).
        alpha: weight of the score term in ``loss`` for mode "d3diff".
        mode: "d3diff", "mask_only" or "score_only".
    """

    loss: Tensor
    mask_loss: Tensor
    score_loss: Tensor
    mask_nll: Tensor
    mask_accuracy: Tensor
    num_masked: Tensor
    mean_mask_ratio: Tensor
    mean_score_weight: Tensor
    alpha: float
    mode: str

    def metrics(self) -> dict[str, float]:
        """Plain floats for logging (synchronises the device)."""
        names = [f.name for f in fields(self) if f.name != "mode"]
        return {
            k: float(v.detach()) if isinstance(v, Tensor) else float(v)
            for k in names
            for v in (getattr(self, k),)
        }


def score_entropy(log_score_MK: Tensor, target_M: Tensor, log_ratio_M: Tensor) -> Tensor:
    """SEDD denoising score entropy of masked positions, per position (unweighted by sigma).

    ``sum_y s_y - r log s_k + K(r)`` with s = exp(log_score), true ratio r at the clean code
    k and 0 elsewhere, computed as ``r * D(log_score - log r)`` (module docstring). float32.

    Args:
        log_score_MK: log of the model's score for the K non-mask codes (any float dtype).
        target_M: clean codes k (long).
        log_ratio_M: log r = log(alpha_bar / (1 - alpha_bar)) per position.
    Returns:
        dse_M: >= 0, zero iff the score equals the true ratio.
    """
    log_ratio_M = log_ratio_M.float()
    u_MK = log_score_MK.float() - log_ratio_M[:, None]
    return log_ratio_M.exp() * relative_score_entropy(u_MK, target_M)


def relative_score_entropy(u_MK: Tensor, target_M: Tensor) -> Tensor:
    """D(u) = sum_{y != k} exp(u_y) + (exp(u_k) - 1 - u_k) >= 0, float32, shape (M,)."""
    u_MK = u_MK.float().clamp(max=U_MAX)
    u_k_M = u_MK.gather(1, target_M[:, None]).squeeze(1)
    others_MK = u_MK.scatter(1, target_M[:, None], float("-inf"))
    off_target_M = torch.logsumexp(others_MK, dim=1).exp()
    on_target_M = (torch.expm1(u_k_M) - u_k_M).clamp_min(0.0)
    return off_target_M + on_target_M


def _relative_dse(
    logits_MK: Tensor, ce_M: Tensor, target_M: Tensor, form: str, mask_ratio_M: Tensor
) -> Tensor:
    """D(u) per masked position for the chosen score form (module docstring), float32.

    The posterior forms use their closed forms (a CE, plus a theta-free constant for the
    paper's form), which cost nothing beyond the CE; the tests check them against the general
    ``score_entropy``. The free form evaluates D on u = logits - log K.
    """
    if form == "posterior":
        return ce_M
    if form == "posterior_paper":
        keep_M = 1.0 - mask_ratio_M.double().clamp(GAMMA_EPS, 1.0 - GAMMA_EPS)
        return ce_M + (1.0 / keep_M - 1.0 + torch.log(keep_M)).float()
    return relative_score_entropy(logits_MK - math.log(logits_MK.shape[-1]), target_M)


def _reduce(values_M: Tensor, how: str, num_masked: int, batch: int, n: int) -> Tensor:
    total = values_M.sum()
    if how == "masked_mean":
        return total / max(num_masked, 1)
    if how == "token_mean":
        return total / (batch * n)
    return total / batch


def _check(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(valid)}")


def _check_shapes(logits_BNK: Tensor, target_BN: Tensor, mask_BN: Tensor, *per_seq: Tensor):
    if logits_BNK.dim() != 3 or target_BN.shape != logits_BNK.shape[:2]:
        raise UserError(
            f"logits must be (B, N, K) and targets (B, N); got {tuple(logits_BNK.shape)} "
            f"and {tuple(target_BN.shape)}"
        )
    if mask_BN.shape != target_BN.shape or mask_BN.dtype != torch.bool:
        raise UserError(f"mask must be a bool tensor of shape {tuple(target_BN.shape)}")
    for v in per_seq:
        if v.shape != target_BN.shape[:1]:
            raise UserError(f"per-sequence values must have shape (B,), got {tuple(v.shape)}")


def d3diff_loss(
    logits_BNK: Tensor,
    target_BN: Tensor,
    mask_BN: Tensor,
    mask_ratio_B: Tensor,
    mask_ratio_rate_B: Tensor,
    *,
    alpha: float = 0.01,
    mode: str = "d3diff",
    score_form: str = "posterior",
    mask_weighting: str = "none",
    mask_reduction: str = "masked_mean",
    score_reduction: str = "sequence_sum",
) -> LossOutput:
    """D3Diff: ``mask_loss + alpha * score_loss`` (NOTES.md §2; alpha = 0.01 in the paper).

    Args:
        logits_BNK: denoiser logits over the K codes (any float dtype; computed in fp32).
        target_BN: clean codes in [0, K).
        mask_BN: True where the input was masked (only these positions carry a loss).
        mask_ratio_B, mask_ratio_rate_B: gamma(t) and gamma'(t) per sequence
            (``Corruption.mask_ratio_B`` / ``mask_ratio_rate_B``).
        alpha: weight of the score term (mode "d3diff").
        mode: "d3diff" | "mask_only" | "score_only" (the paper's ablations).
        score_form: "posterior" (exact, default) | "posterior_paper" | "free".
        mask_weighting: "none" (plain CE, Show-o) | "elbo" (gamma'/gamma, MDLM).
        mask_reduction, score_reduction: see the module docstring.
    """
    for name, value, valid in (
        ("mode", mode, MODES),
        ("score_form", score_form, SCORE_FORMS),
        ("mask_weighting", mask_weighting, MASK_WEIGHTINGS),
        ("mask_reduction", mask_reduction, REDUCTIONS),
        ("score_reduction", score_reduction, REDUCTIONS),
    ):
        _check(name, value, valid)
    _check_shapes(logits_BNK, target_BN, mask_BN, mask_ratio_B, mask_ratio_rate_B)
    batch, n, _ = logits_BNK.shape
    b_idx_M, n_idx_M = mask_BN.nonzero(as_tuple=True)
    num_masked = int(b_idx_M.numel())
    logits_MK = logits_BNK[b_idx_M, n_idx_M].float()
    target_M = target_BN[b_idx_M, n_idx_M]
    weight_B = elbo_weight(mask_ratio_B, mask_ratio_rate_B).to(logits_MK.device)
    weight_M = weight_B[b_idx_M]

    ce_M = F.cross_entropy(logits_MK, target_M, reduction="none")
    mask_terms_M = ce_M * weight_M if mask_weighting == "elbo" else ce_M
    mask_loss = _reduce(mask_terms_M, mask_reduction, num_masked, batch, n)

    ratio_M = mask_ratio_B.to(weight_M.device)[b_idx_M]
    dse_M = _relative_dse(logits_MK, ce_M, target_M, score_form, ratio_M)
    score_terms_M = weight_M * dse_M
    score_loss = _reduce(score_terms_M, score_reduction, num_masked, batch, n)

    if mode == "mask_only":
        total, score_loss = mask_loss, score_loss.detach()
    elif mode == "score_only":
        total, mask_loss = score_loss, mask_loss.detach()
    else:
        total = mask_loss + alpha * score_loss
    with torch.no_grad():
        correct = (logits_MK.argmax(dim=-1) == target_M).float().sum()
        return LossOutput(
            loss=total,
            mask_loss=mask_loss,
            score_loss=score_loss,
            mask_nll=ce_M.detach().sum() / max(num_masked, 1),
            mask_accuracy=correct / max(num_masked, 1),
            num_masked=torch.tensor(num_masked),
            mean_mask_ratio=mask_ratio_B.detach().float().mean(),
            mean_score_weight=weight_B.mean(),
            alpha=float(alpha),
            mode=mode,
        )


@dataclass
class D3DiffConfig:
    """Loss settings (defaults follow the paper: D3Diff, alpha = 0.01, posterior score)."""

    alpha: float = 0.01
    mode: str = "d3diff"
    score_form: str = "posterior"
    mask_weighting: str = "none"
    mask_reduction: str = "masked_mean"
    score_reduction: str = "sequence_sum"


def build_d3diff_loss(cfg: D3DiffConfig) -> Callable[..., LossOutput]:
    """``d3diff_loss`` with the config's keyword arguments bound (names validated now)."""
    _check("mode", cfg.mode, MODES)
    _check("score_form", cfg.score_form, SCORE_FORMS)
    _check("mask_weighting", cfg.mask_weighting, MASK_WEIGHTINGS)
    _check("mask_reduction", cfg.mask_reduction, REDUCTIONS)
    _check("score_reduction", cfg.score_reduction, REDUCTIONS)
    return functools.partial(d3diff_loss, **asdict(cfg))

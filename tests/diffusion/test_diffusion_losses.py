"""D3Diff loss: score entropy properties, closed forms, reductions, bf16 safety."""

import math

import pytest
import torch
import torch.nn.functional as F

from unif2ace.diffusion.corruption import corrupt
from unif2ace.diffusion.losses import (
    SCORE_FORMS,
    D3DiffConfig,
    build_d3diff_loss,
    d3diff_loss,
    score_entropy,
)
from unif2ace.diffusion.schedules import SCHEDULE_NAMES, get_schedule
from unif2ace.errors import UserError

K, MASK = 16, 16


def _batch(b=4, n=12, seed=0, scale=3.0, t=None):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, K, (b, n), generator=g)
    t_B = torch.rand(b, generator=g) * 0.9 + 0.05 if t is None else t
    c = corrupt(codes, mask_token=MASK, t_B=t_B, generator=g, method="exact")
    logits = torch.randn(b, n, K, generator=g) * scale
    return logits, codes, c


def _naive_dse(log_s, k, r):
    """sum_y s_y - r log s_k + K(r), K(a) = a (log a - 1), in float64 (SEDD Sec. 3.2)."""
    log_s, r = log_s.double(), r.double()
    s = log_s.exp()
    return s.sum(-1) - r * log_s.gather(1, k[:, None]).squeeze(1) + r * (r.log() - 1)


def test_score_entropy_nonnegative_and_matches_naive_formula():
    g = torch.Generator().manual_seed(0)
    log_s = torch.randn(200, K, generator=g) * 3
    k = torch.randint(0, K, (200,), generator=g)
    log_r = torch.linspace(-8, 8, 200)
    dse = score_entropy(log_s, k, log_r)
    assert (dse >= 0).all()
    torch.testing.assert_close(
        dse.double(), _naive_dse(log_s, k, log_r.exp()), rtol=1e-4, atol=1e-4
    )


def test_score_entropy_zero_at_true_ratio():
    k = torch.arange(K)
    log_r = torch.linspace(-5, 5, K)
    true_log_s = torch.full((K, K), float("-inf"))
    true_log_s[k, k] = log_r  # r_y = rho [y = k]
    assert torch.equal(score_entropy(true_log_s, k, log_r), torch.zeros(K))
    near = true_log_s.clamp_min(-60.0)
    assert score_entropy(near, k, log_r).abs().max() < 1e-12
    # any perturbation of the score increases it
    bumped = true_log_s.clone()
    bumped[k, k] += 0.1
    assert (score_entropy(bumped, k, log_r) > 0).all()


def _masked_ce_sum_per_seq(logits, codes, mask, weight_B):
    ce = F.cross_entropy(logits.double().transpose(1, 2), codes, reduction="none")
    return (ce * mask * weight_B.double()[:, None]).sum(1)


def _generic_score_loss(logits, codes, c, log_score_fn):
    """sigma(t) * SEDD score entropy of s = exp(log_score_fn(...)), summed, / B (general path)."""
    sched = get_schedule("cosine")
    b, n = c.mask_BN.nonzero(as_tuple=True)
    rho = sched.true_ratio(c.t_B.double())[b]
    sigma = sched.noise_rate(c.t_B.double())[b]
    log_s = log_score_fn(logits[b, n].double(), rho, c.mask_ratio_B.double()[b])
    return (sigma * score_entropy(log_s, codes[b, n], rho.log()).double()).sum() / len(codes)


def test_posterior_score_equals_elbo_weighted_ce():
    logits, codes, c = _batch()
    out = d3diff_loss(logits, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B)
    w_B = c.mask_ratio_rate_B.double() / c.mask_ratio_B.double()  # gamma'/gamma
    ref = _masked_ce_sum_per_seq(logits, codes, c.mask_BN, w_B).mean()  # sequence_sum
    torch.testing.assert_close(out.score_loss.double(), ref, rtol=1e-5, atol=1e-5)
    # ... and the general score entropy of s = rho * p_theta(y | x_t) gives the same number
    generic = _generic_score_loss(
        logits, codes, c, lambda lg, rho, g: torch.log_softmax(lg, -1) + rho.log()[:, None]
    )
    torch.testing.assert_close(out.score_loss.double(), generic, rtol=1e-4, atol=1e-4)
    # it is MDLM's ELBO: the elbo-weighted mask loss with the same reduction is identical
    elbo = d3diff_loss(
        logits,
        codes,
        c.mask_BN,
        c.mask_ratio_B,
        c.mask_ratio_rate_B,
        mask_weighting="elbo",
        mask_reduction="sequence_sum",
    )
    torch.testing.assert_close(elbo.mask_loss, out.score_loss, rtol=1e-5, atol=1e-5)


def test_paper_posterior_form_is_weighted_ce_plus_constant():
    logits, codes, c = _batch(seed=1)
    out = d3diff_loss(
        logits,
        codes,
        c.mask_BN,
        c.mask_ratio_B,
        c.mask_ratio_rate_B,
        score_form="posterior_paper",
    )
    g, dg = c.mask_ratio_B.double(), c.mask_ratio_rate_B.double()
    keep = 1 - g
    ce_part = _masked_ce_sum_per_seq(logits, codes, c.mask_BN, dg / g)
    const_B = dg / keep + dg / g * torch.log(keep)  # theta-free, >= 0
    assert (const_B >= 0).all()
    ref = (ce_part + const_B * c.mask_BN.sum(1)).mean()
    torch.testing.assert_close(out.score_loss.double(), ref, rtol=1e-5, atol=1e-5)
    generic = _generic_score_loss(  # s = p_theta / q_t(MASK | x0) = p_theta / gamma
        logits, codes, c, lambda lg, rho, g: torch.log_softmax(lg, -1) - g.log()[:, None]
    )
    torch.testing.assert_close(out.score_loss.double(), generic, rtol=1e-4, atol=1e-4)


def test_free_score_matches_naive_dse():
    logits, codes, c = _batch(seed=2, scale=1.0)
    out = d3diff_loss(
        logits, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B, score_form="free"
    )
    sched = get_schedule("cosine")
    b, n = c.mask_BN.nonzero(as_tuple=True)
    rho = sched.true_ratio(c.t_B.double())[b]
    sigma = sched.noise_rate(c.t_B.double())[b]
    log_s = logits[b, n].double() + rho.log()[:, None] - math.log(K)  # s = rho exp(l) / K
    ref = (sigma * _naive_dse(log_s, codes[b, n], rho)).sum() / logits.shape[0]
    torch.testing.assert_close(out.score_loss.double(), ref, rtol=1e-4, atol=1e-4)
    assert out.score_loss > 0


def test_posterior_score_vanishes_at_true_posterior():
    logits, codes, c = _batch(seed=3)
    perfect = F.one_hot(codes, K).float() * 40.0
    out = d3diff_loss(perfect, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B)
    assert out.score_loss.item() < 1e-6 and out.mask_loss.item() < 1e-6
    assert out.mask_accuracy.item() == 1.0


def test_mask_loss_equals_reference_ce():
    logits, codes, c = _batch(seed=4)
    out = d3diff_loss(logits, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B)
    target = codes.masked_fill(~c.mask_BN, -100)  # Show-o: ignore unmasked positions
    ref = F.cross_entropy(logits.reshape(-1, K), target.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.mask_loss, ref)
    torch.testing.assert_close(out.mask_nll, ref)
    assert out.num_masked.item() == int(c.mask_BN.sum())


def test_modes_and_total():
    logits, codes, c = _batch(seed=5)
    logits.requires_grad_(True)
    args = (logits, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B)
    d3 = d3diff_loss(*args, alpha=0.01)
    torch.testing.assert_close(d3.loss, d3.mask_loss + 0.01 * d3.score_loss)
    mask_only = d3diff_loss(*args, mode="mask_only")
    assert mask_only.loss is mask_only.mask_loss and not mask_only.score_loss.requires_grad
    score_only = d3diff_loss(*args, mode="score_only")
    assert score_only.loss is score_only.score_loss and not score_only.mask_loss.requires_grad
    torch.testing.assert_close(score_only.score_loss, d3.score_loss)
    assert set(d3.metrics()) >= {"loss", "mask_loss", "score_loss", "mask_accuracy", "alpha"}


@pytest.mark.parametrize("reduction", ["masked_mean", "token_mean", "sequence_sum"])
def test_reductions_do_not_depend_on_batch_composition(reduction):
    logits, codes, c = _batch(b=1, seed=6)
    one = d3diff_loss(
        logits,
        codes,
        c.mask_BN,
        c.mask_ratio_B,
        c.mask_ratio_rate_B,
        mask_reduction=reduction,
        score_reduction=reduction,
    )
    rep = [x.repeat(3, *([1] * (x.dim() - 1))) for x in (logits, codes, c.mask_BN)]
    three = d3diff_loss(
        *rep,
        c.mask_ratio_B.repeat(3),
        c.mask_ratio_rate_B.repeat(3),
        mask_reduction=reduction,
        score_reduction=reduction,
    )
    torch.testing.assert_close(one.mask_loss, three.mask_loss)
    torch.testing.assert_close(one.score_loss, three.score_loss)


@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
@pytest.mark.parametrize("form", SCORE_FORMS)
@pytest.mark.parametrize("t", [1e-6, 1 - 1e-6])
def test_bf16_safe_at_extreme_times(schedule, form, t):
    g = torch.Generator().manual_seed(7)
    codes = torch.randint(0, K, (3, 10), generator=g)
    sched = get_schedule(schedule)
    t_B = torch.full((3,), t)
    mask = torch.rand(3, 10, generator=g) < 0.5
    mask[:, 0] = True
    logits = (torch.randn(3, 10, K, generator=g) * 20).bfloat16().requires_grad_(True)
    out = d3diff_loss(
        logits,
        codes,
        mask,
        sched.mask_ratio(t_B),
        sched.mask_ratio_rate(t_B),
        score_form=form,
        mask_weighting="elbo",
    )
    for v in (out.loss, out.mask_loss, out.score_loss):
        assert torch.isfinite(v) and v >= 0
    out.loss.backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_no_masked_positions_gives_zero_loss_and_gradient():
    logits = torch.randn(2, 5, K, requires_grad=True)
    codes = torch.zeros(2, 5, dtype=torch.long)
    out = d3diff_loss(
        logits, codes, torch.zeros(2, 5, dtype=torch.bool), torch.full((2,), 0.5), torch.ones(2)
    )
    assert out.loss.item() == 0.0 and out.num_masked.item() == 0
    out.loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_config_builder_and_errors():
    logits, codes, c = _batch(seed=8)
    f = build_d3diff_loss(D3DiffConfig(alpha=0.5, mode="d3diff"))
    out = f(logits, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B)
    assert out.alpha == 0.5
    with pytest.raises(UserError, match="posterior_paper"):
        build_d3diff_loss(D3DiffConfig(score_form="exp"))
    with pytest.raises(UserError, match="score_only"):
        d3diff_loss(logits, codes, c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B, mode="x")
    with pytest.raises(UserError):
        d3diff_loss(logits, codes[:, :3], c.mask_BN, c.mask_ratio_B, c.mask_ratio_rate_B)

"""Masking schedules: boundary values, monotonicity, derivatives, registry errors."""

import math

import pytest
import torch

from unif2ace.diffusion.schedules import SCHEDULE_NAMES, elbo_weight, get_schedule
from unif2ace.errors import UserError


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_boundaries_and_monotone(name):
    sched = get_schedule(name)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    g = sched.mask_ratio(t)
    assert g[0].item() == pytest.approx(0.0, abs=1e-12)
    assert g[-1].item() == pytest.approx(1.0, abs=1e-12)
    assert torch.all(g[1:] - g[:-1] >= 0)
    assert torch.all(sched.mask_ratio_rate(t) >= 0)
    torch.testing.assert_close(sched.keep_prob(t), 1 - g)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_derivative_matches_finite_difference(name):
    sched = get_schedule(name)
    t = torch.linspace(0.01, 0.98, 97, dtype=torch.float64)
    h = 1e-6
    fd = (sched.mask_ratio(t + h) - sched.mask_ratio(t - h)) / (2 * h)
    torch.testing.assert_close(sched.mask_ratio_rate(t), fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_absorbing_process_quantities(name):
    sched = get_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    g, dg = sched.mask_ratio(t), sched.mask_ratio_rate(t)
    # alpha_bar = exp(-sigma_bar), sigma = d sigma_bar / dt, rho = alpha_bar / (1 - alpha_bar)
    torch.testing.assert_close(torch.exp(-sched.total_noise(t)), 1 - g)
    torch.testing.assert_close(sched.noise_rate(t), dg / (1 - g))
    torch.testing.assert_close(sched.true_ratio(t), (1 - g) / g)
    torch.testing.assert_close(
        sched.elbo_weight(t).double(), sched.noise_rate(t) * sched.true_ratio(t), rtol=1e-6, atol=0
    )


def test_cosine_is_maskgit_cosine():
    # MaskGIT: mask ratio cos(pi/2 * r) at progress r = 1 - t.
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    g = get_schedule("cosine").mask_ratio(1 - r)
    torch.testing.assert_close(g, torch.cos(math.pi / 2 * r))


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_finite_at_extremes(name):
    sched = get_schedule(name)
    t = torch.tensor([0.0, 1e-6, 1 - 1e-6, 1.0])
    for f in (sched.total_noise, sched.noise_rate, sched.true_ratio, sched.elbo_weight):
        assert torch.isfinite(f(t)).all()
    assert torch.isfinite(elbo_weight(torch.zeros(2), torch.ones(2))).all()


def test_bf16_times_are_upcast():
    out = get_schedule("cosine").mask_ratio(torch.tensor([0.5], dtype=torch.bfloat16))
    assert out.dtype == torch.float32


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as err:
        get_schedule("cosinus")
    for name in SCHEDULE_NAMES:
        assert name in str(err.value)

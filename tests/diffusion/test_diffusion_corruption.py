"""Forward corruption: masking statistics, exact counts, time sampling, determinism."""

import pytest
import torch

from unif2ace.diffusion.corruption import (
    CorruptionConfig,
    build_corruption,
    corrupt,
    mask_codes,
    sample_times,
)
from unif2ace.errors import UserError

K, MASK = 32, 40


def _codes(b=8, n=64, seed=0):
    return torch.randint(0, K, (b, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["bernoulli", "exact"])
def test_masks_only_where_reported(method):
    codes = _codes()
    out = corrupt(codes, mask_token=MASK, generator=torch.Generator().manual_seed(1), method=method)
    assert torch.equal(out.codes_BN == MASK, out.mask_BN)
    assert torch.equal(out.codes_BN[~out.mask_BN], codes[~out.mask_BN])
    torch.testing.assert_close(out.noise_level_B, out.mask_BN.float().mean(1))
    assert out.t_B.shape == out.mask_ratio_B.shape == out.mask_ratio_rate_B.shape == (8,)


def test_same_generator_same_corruption():
    codes = _codes()
    a = corrupt(codes, mask_token=MASK, generator=torch.Generator().manual_seed(3))
    b = corrupt(codes, mask_token=MASK, generator=torch.Generator().manual_seed(3))
    c = corrupt(codes, mask_token=MASK, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.codes_BN, b.codes_BN) and torch.equal(a.t_B, b.t_B)
    assert not torch.equal(a.codes_BN, c.codes_BN)


def test_bernoulli_rate_matches_schedule():
    codes = _codes(b=16, n=4096)
    t = torch.full((16,), 0.3)
    out = corrupt(codes, mask_token=MASK, t_B=t, generator=torch.Generator().manual_seed(0))
    expected = out.mask_ratio_B[0].item()  # sin(0.15 pi) = 0.454
    assert out.mask_BN.float().mean().item() == pytest.approx(expected, abs=0.01)


def test_exact_counts():
    codes = _codes(b=5, n=50)
    ratio = torch.tensor([0.0, 0.011, 0.5, 0.77, 1.0])
    _, mask = mask_codes(
        codes, ratio, mask_token=MASK, method="exact", generator=torch.Generator().manual_seed(0)
    )
    assert mask.sum(1).tolist() == [1, 1, 25, 38, 50]


def test_low_discrepancy_times_are_stratified():
    t = sample_times(8, generator=torch.Generator().manual_seed(0), t_min=0.1)
    assert t.min() >= 0.1 and t.max() <= 1.0
    gaps = torch.sort(t).values.diff()
    torch.testing.assert_close(gaps, torch.full((7,), 0.9 / 8))
    plain = sample_times(1000, generator=torch.Generator().manual_seed(0), low_discrepancy=False)
    assert 0.45 < plain.mean().item() < 0.55


def test_config_builder_and_errors():
    f = build_corruption(CorruptionConfig(schedule="linear", method="exact"))
    out = f(_codes(), mask_token=MASK, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.mask_ratio_B, out.t_B)  # linear: gamma(t) = t
    with pytest.raises(UserError, match="bernoulli"):
        build_corruption(CorruptionConfig(method="random"))
    with pytest.raises(UserError, match="cosine"):
        build_corruption(CorruptionConfig(schedule="nope"))
    with pytest.raises(UserError):
        corrupt(torch.zeros(3, dtype=torch.long), mask_token=MASK)

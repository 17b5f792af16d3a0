import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from unif2ace.tokenizer.autoencoder import build_tokenizer
from unif2ace.tokenizer.evaluate import codebook_usage, evaluate_tokenizer, psnr, ssim


def test_identical_images_psnr_inf_ssim_one():
    x = torch.rand(2, 3, 24, 24)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_psnr_known_value():
    x = torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64)
    assert math.isclose(float(psnr(x, x + 0.1)[0]), 20.0, rel_tol=1e-9)


def _ssim_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """Independent SSIM: scipy Gaussian filter, then crop to the valid window positions."""
    r, c1, c2 = 5, 0.01**2, 0.03**2
    vals = []
    for ch in range(a.shape[0]):
        x, y = a[ch], b[ch]

        def f(v):
            return gaussian_filter(v, 1.5, truncate=r / 1.5, mode="constant")[r:-r, r:-r]

        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def test_ssim_matches_independent_implementation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 32, 32, generator=g)
    b = (a + 0.2 * torch.randn(1, 3, 32, 32, generator=g)).clamp(0, 1)
    ref = _ssim_scipy(a[0].double().numpy(), b[0].double().numpy())
    assert math.isclose(float(ssim(a, b)[0]), ref, rel_tol=1e-6)
    assert float(ssim(a, b)[0]) < 0.9


def test_codebook_usage():
    used, ppl = codebook_usage(torch.tensor([5, 5, 0, 0]))
    assert used == 0.5 and math.isclose(ppl, 2.0)
    used, ppl = codebook_usage(torch.tensor([1, 1, 1, 1]))
    assert used == 1.0 and math.isclose(ppl, 4.0)


def test_evaluate_tokenizer_runs_and_is_consistent():
    torch.manual_seed(0)
    model = build_tokenizer("tiny")
    batches = [torch.rand(4, 3, 32, 32) * 2 - 1 for _ in range(2)]
    ev = evaluate_tokenizer(model, batches, max_images=6)
    assert ev.images == 6 and ev.codebook_size == 64
    assert 0 < ev.codebook_used_fraction <= 1 and 1 <= ev.codebook_perplexity <= 64
    assert 0 <= ev.code_roundtrip_rate <= 1 and -1 <= ev.ssim <= 1
    # identical-image check: PSNR of a model is finite and matches a direct computation
    x = batches[0][:2]
    rec = model.decode(model.encode(x))
    direct = float(psnr((x + 1) / 2, (rec + 1) / 2).mean())
    assert evaluate_tokenizer(model, [x]).psnr == pytest.approx(direct)


def test_colour_drift_known_values():
    from unif2ace.tokenizer.evaluate import colour_drift

    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0, 0] += 0.2  # image 0: red channel +0.2 everywhere -> (0.2 * 255) / 3 channels
    b[1, :, :4] += 0.5  # image 1: top half +0.5 in all channels -> 0.25 * 255
    torch.testing.assert_close(colour_drift(a, b), torch.tensor([17.0, 63.75]))
    assert float(colour_drift(a, a).abs().max()) == 0.0

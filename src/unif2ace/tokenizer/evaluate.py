"""Image-tokenizer evaluation: PSNR, SSIM, codebook usage and the code round-trip rate.

PSNR and SSIM are computed on images mapped to ``[0, 1]`` (data range 1). SSIM follows
Wang et al. (2004, "Image quality assessment: from error visibility to structural
similarity"): 11x11 Gaussian window, σ = 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``,
per channel, averaged over the valid (unpadded) window positions — the same conventions as
``skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False)``.

Shape legend: B batch, C channels, H/W pixels, K codes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError


def psnr(a_BCHW: torch.Tensor, b_BCHW: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB ``(B,)``; ``inf`` where the images are identical."""
    mse_B = (a_BCHW.double() - b_BCHW.double()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse_B)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    a_BCHW: torch.Tensor,
    b_BCHW: torch.Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-image mean SSIM ``(B,)`` (1 for identical images)."""
    a, b = a_BCHW.double(), b_BCHW.double()
    c = a.shape[1]
    g = _gaussian_window(window, sigma).to(a.device)
    k_h = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    k_w = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable Gaussian, 'valid' positions only
        return F.conv2d(F.conv2d(x, k_h, groups=c), k_w, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.flatten(1).mean(dim=1)


def colour_drift(a_BCHW: torch.Tensor, b_BCHW: torch.Tensor) -> torch.Tensor:
    """Per image, the mean absolute difference of the mean RGB colours of images in [0, 1],
    in 0-255 units: how far a reconstruction's overall colour (mostly the background) moved."""
    return (a_BCHW.float().mean((2, 3)) - b_BCHW.float().mean((2, 3))).abs().mean(1) * 255.0


def codebook_usage(counts_K: torch.Tensor) -> tuple[float, float]:
    """(fraction of codes used at least once, perplexity ``exp(H(p))``) from code counts."""
    p = counts_K.double() / counts_K.sum().clamp(min=1)
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    return float((counts_K > 0).double().mean()), math.exp(entropy)


@dataclass
class TokenizerEval:
    """Aggregate metrics over an evaluated split (see :func:`evaluate_tokenizer`)."""

    images: int
    psnr: float
    ssim: float
    codebook_used_fraction: float
    codebook_perplexity: float
    codebook_size: int
    code_roundtrip_rate: float
    colour_drift: float = 0.0  # mean |mean RGB(recon) - mean RGB(original)|, 0-255 units

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_tokenizer(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    max_images: int | None = None,
    autocast_bf16: bool = False,
) -> TokenizerEval:
    """Evaluate an :class:`~unif2ace.tokenizer.autoencoder.LFQAutoencoder`.

    Args:
        model: the tokenizer (``encode`` / ``decode`` / ``codebook_size``).
        batches: image batches ``(B, 3, H, W)`` in ``[-1, 1]``.
        max_images: stop after this many images.
        autocast_bf16: run encoder/decoder under CPU bf16 autocast.

    PSNR is averaged over images with finite values (identical reconstructions count as
    100 dB); the round-trip rate is the fraction of codes with ``encode(decode(c)) == c``.
    """
    model.eval()
    k = model.codebook_size
    counts_K = torch.zeros(k, dtype=torch.long)
    n = 0
    psnr_sum = ssim_sum = drift_sum = 0.0
    same = total = 0
    for images in batches:
        if max_images is not None and n >= max_images:
            break
        if max_images is not None:
            images = images[: max_images - n]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            codes = model.encode(images)
            recon = model.decode(codes)
            codes2 = model.encode(recon)
        x01, r01 = (images.float() + 1) / 2, (recon.float() + 1) / 2
        psnr_sum += float(psnr(x01, r01).clamp(max=100.0).sum())
        ssim_sum += float(ssim(x01, r01).sum())
        drift_sum += float(colour_drift(x01, r01).sum())
        counts_K += torch.bincount(codes.flatten(), minlength=k)
        same += int((codes2 == codes).sum())
        total += codes.numel()
        n += images.shape[0]
    if n == 0:
        raise UserError("no images to evaluate; check --data and --split")
    used, perplexity = codebook_usage(counts_K)
    return TokenizerEval(
        n, psnr_sum / n, ssim_sum / n, used, perplexity, k, same / total, drift_sum / n
    )

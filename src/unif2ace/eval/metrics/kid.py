"""Kernel distance between feature distributions (KID): unbiased at any sample size, with
per-image terms so that it has a bootstrap interval and a paired comparison.

KID (Bińkowski et al., 2018, "Demystifying MMD GANs", §3 and appendix D) is the squared
maximum mean discrepancy between the feature sets of generated (g) and real (r) images with
the cubic polynomial kernel ``k(x, y) = (x·y / F + 1)³``, estimated without bias:

    KID = mean_{i≠j} k(g_i, g_j) + mean_{a≠b} k(r_a, r_b) − 2 mean_{i,a} k(g_i, r_a).

FID fits Gaussians and is biased upward by an amount that depends on the sample size (48
generated faces in 512 judge dimensions sit far above the population value), so FIDs of
different set sizes do not compare and no bootstrap fixes the bias. KID's expectation is the
population value whatever the sizes (0 for the same distribution; an estimate can fall
slightly below 0), and it is a sum of per-image terms: resampling the generated images
(:func:`kid_resampled`) gives a percentile interval over the generated faces, with the real
reference held fixed, and two evaluations against the same real reference compare paired.

Shape legend: N generated images, M real images, F feature dimensions, R resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from .fid import _as_float64_2d

__all__ = ["KidTerms", "kid_from_features", "kid_resampled", "kid_terms", "polynomial_kernel"]


def polynomial_kernel(a_NF: np.ndarray, b_MF: np.ndarray) -> np.ndarray:
    """KID's kernel ``(a·b / F + 1)³`` between every row of ``a`` and of ``b``: ``(N, M)``."""
    return (a_NF @ b_MF.T / a_NF.shape[1] + 1.0) ** 3


@dataclass
class KidTerms:
    """What KID needs of one generated set against one real set.

    Attributes:
        gen_gen_NN: kernel between generated images (the diagonal is never used).
        gen_real_N: each generated image's mean kernel to the real images.
        real_real: mean kernel between distinct real images (constant for a real set).
    """

    gen_gen_NN: np.ndarray
    gen_real_N: np.ndarray
    real_real: float

    def value(self) -> float:
        """The unbiased estimate on all the generated images."""
        return float(kid_resampled(self, np.arange(len(self.gen_real_N))[None])[0])

    def unit_rows(self) -> list[list[float]]:
        """One row per generated image, ``[real_real, gen_real_i, *gen_gen_NN[i]]``: an
        evaluation's per-face ``units`` (:func:`KidTerms.from_unit_rows` reads them back)."""
        n = len(self.gen_real_N)
        rows = np.concatenate(
            [np.full((n, 1), self.real_real), self.gen_real_N[:, None], self.gen_gen_NN], axis=1
        )
        return rows.tolist()

    @classmethod
    def from_unit_rows(cls, rows) -> KidTerms:
        r = np.asarray(rows, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] != r.shape[0] + 2:
            raise UserError(f"KID units must be N rows of N + 2 numbers, got shape {r.shape}")
        return cls(gen_gen_NN=r[:, 2:], gen_real_N=r[:, 1], real_real=float(r[0, 0]))


def kid_terms(gen_NF, real_MF) -> KidTerms:
    """:class:`KidTerms` of generated features ``gen_NF`` against real features ``real_MF``
    (rows are images; at least 2 each; the feature dimension must agree)."""
    g, r = _as_float64_2d(gen_NF, "generated features"), _as_float64_2d(real_MF, "real features")
    if g.shape[1] != r.shape[1]:
        raise UserError(f"feature sizes differ: {g.shape[1]} vs {r.shape[1]}; use one network")
    if len(g) < 2 or len(r) < 2:
        raise UserError(f"KID needs at least 2 images per set, got {len(g)} and {len(r)}")
    k_rr = polynomial_kernel(r, r)
    m = len(r)
    real_real = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    return KidTerms(polynomial_kernel(g, g), polynomial_kernel(g, r).mean(1), float(real_real))


def kid_from_features(gen_NF, real_MF) -> float:
    """Unbiased KID between two feature sets."""
    return kid_terms(gen_NF, real_MF).value()


def kid_resampled(terms: KidTerms, idx_RN: np.ndarray) -> np.ndarray:
    """KID of each resample of the generated images, ``(R,)``: row ``idx_RN[r]`` lists the
    images (with repetition) of resample r. Two copies of one image are never paired with each
    other (that pair is a diagonal term of the unbiased estimate); nan when a resample holds
    a single distinct image."""
    idx = np.asarray(idx_RN)
    n_r, n = idx.shape
    n_img = len(terms.gen_real_N)
    counts = np.bincount((idx + n_img * np.arange(n_r)[:, None]).ravel(), minlength=n_r * n_img)
    c = counts.reshape(n_r, n_img).astype(np.float64)
    off = terms.gen_gen_NN - np.diag(np.diag(terms.gen_gen_NN))
    pairs = n * n - (c * c).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gen_gen = np.where(pairs > 0, ((c @ off) * c).sum(1) / np.maximum(pairs, 1), np.nan)
    gen_real = c @ terms.gen_real_N / n
    return gen_gen + terms.real_real - 2.0 * gen_real

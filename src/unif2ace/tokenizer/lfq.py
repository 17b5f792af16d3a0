"""Lookup-free quantisation (LFQ), MAGVIT-v2 (Yu et al., 2023, "Language Model Beats
Diffusion", Sec. 3.1).

Each latent channel is quantised independently to its sign, ``q_i = sign(z_i) ∈ {-1, +1}``;
the codebook is the implicit set ``{-1, +1}^d`` of size ``2^d`` and the index of a code is its
binary number, ``index = Σ_i [q_i > 0] · 2^(d-1-i)`` (channel 0 is the most significant bit).

Training terms (MAGVIT-v2 Eq. 4-5):

* entropy penalty ``E[H(q(z))] - γ · H(E[q(z)])``: low per-token entropy (confident codes) and
  high entropy of the batch-averaged code distribution (all codes used). ``q(z)`` is the
  softmax over codes of ``-τ‖z - c‖²``; it factorises over channels into independent
  Bernoullis with ``P(c_i = +1) = sigmoid(4 τ z_i)``, which we use for the exact per-token
  entropy. The codebook entropy is exact over all ``2^d`` codes for ``entropy_groups=1``;
  with ``G > 1`` groups the bits are split into G sub-codebooks and their entropies summed
  (Open-MAGVIT2's factorised entropy, Luo et al. 2024): an upper bound of the joint entropy
  whose cost is ``G · 2^(d/G)`` instead of ``2^d`` per token (12 bits: 128 vs 4,096).
* commitment loss ``‖z - sg(q)‖²``.

Gradients pass the quantiser straight through: ``q_st = z + sg(q - z)``.

Shape legend: B batch, D code bits (channels), H/W latent grid, N tokens (B·H·W), K codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LFQOutput:
    """Result of :meth:`LFQ.forward`.

    Attributes:
        quantized_BDHW: straight-through quantised latents (values ±1 in the forward pass).
        codes_BHW: integer code indices in ``[0, 2^D)``.
        entropy_loss: ``per_sample_entropy - gamma * codebook_entropy`` (scalar).
        commit_loss: ``mean((z - sg(q))^2)`` (scalar).
        per_sample_entropy: mean entropy of a token's code distribution, in nats (scalar).
        codebook_entropy: entropy of the batch-averaged code distribution, in nats (scalar).
    """

    quantized_BDHW: torch.Tensor
    codes_BHW: torch.Tensor
    entropy_loss: torch.Tensor
    commit_loss: torch.Tensor
    per_sample_entropy: torch.Tensor
    codebook_entropy: torch.Tensor


def bit_weights(bits: int, device: torch.device | None = None) -> torch.Tensor:
    """Weights ``2^(D-1-i)`` of the code bits, shape ``(D,)`` int64 (channel 0 = MSB)."""
    return 2 ** torch.arange(bits - 1, -1, -1, device=device, dtype=torch.long)


def bits_to_codes(q_BDHW: torch.Tensor) -> torch.Tensor:
    """±1 (or any signed) latents ``(B, D, H, W)`` -> code indices ``(B, H, W)`` int64."""
    w_D = bit_weights(q_BDHW.shape[1], q_BDHW.device)
    return ((q_BDHW > 0).long() * w_D[None, :, None, None]).sum(dim=1)


def codes_to_bits(codes_BHW: torch.Tensor, bits: int) -> torch.Tensor:
    """Code indices ``(B, H, W)`` -> ±1 latents ``(B, D, H, W)`` float32."""
    w_D = bit_weights(bits, codes_BHW.device)
    on_BDHW = (codes_BHW.long()[:, None] // w_D[None, :, None, None]) % 2
    return on_BDHW.float() * 2.0 - 1.0


def _bernoulli_entropy(logit: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of Bernoulli(sigmoid(logit)), elementwise, numerically stable."""
    p = torch.sigmoid(logit)
    return F.softplus(logit) - p * logit


class LFQ(nn.Module):
    """Lookup-free quantiser with ``2^bits`` implicit codes.

    Args:
        bits: code bits D (= latent channels); codebook size ``2^D``.
        entropy_weight: weight of the entropy penalty inside :attr:`LFQOutput` consumers
            (stored for the trainer; the module returns the unweighted terms).
        commitment_weight: weight of the commitment loss (stored for the trainer).
        gamma: weight of the codebook entropy inside the entropy penalty (MAGVIT-v2: 1).
        inv_temperature: τ in ``softmax(-τ‖z - c‖²)`` used for the entropy terms.
        entropy_groups: number of sub-codebooks for the codebook entropy (1 = exact joint;
            ``bits`` = sum of per-bit marginal entropies).
    """

    def __init__(
        self,
        bits: int,
        entropy_weight: float = 0.1,
        commitment_weight: float = 0.25,
        gamma: float = 1.0,
        inv_temperature: float = 1.0,
        entropy_groups: int = 1,
    ) -> None:
        super().__init__()
        if not 1 <= bits <= 30:
            raise ValueError(f"LFQ bits must be in [1, 30], got {bits}")
        self.bits = bits
        self.entropy_weight = entropy_weight
        self.commitment_weight = commitment_weight
        self.gamma = gamma
        self.inv_temperature = inv_temperature
        if not 1 <= entropy_groups <= bits:
            raise ValueError(f"entropy_groups must be in [1, {bits}], got {entropy_groups}")
        self.entropy_groups = entropy_groups

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    def quantize(self, z_BDHW: torch.Tensor) -> torch.Tensor:
        """Sign quantisation ``q = +1 if z > 0 else -1`` (zero maps to -1, bit 0)."""
        return torch.where(z_BDHW > 0, 1.0, -1.0).to(z_BDHW.dtype)

    def forward(self, z_BDHW: torch.Tensor) -> LFQOutput:
        """Quantise latents ``(B, D, H, W)``; see :class:`LFQOutput`."""
        z_BDHW = z_BDHW.float()
        q_BDHW = self.quantize(z_BDHW)
        q_st_BDHW = z_BDHW + (q_BDHW - z_BDHW).detach()
        commit = F.mse_loss(z_BDHW, q_BDHW.detach())
        per_sample, codebook = self.entropies(z_BDHW)
        return LFQOutput(
            quantized_BDHW=q_st_BDHW,
            codes_BHW=bits_to_codes(q_BDHW),
            entropy_loss=per_sample - self.gamma * codebook,
            commit_loss=commit,
            per_sample_entropy=per_sample,
            codebook_entropy=codebook,
        )

    def entropies(self, z_BDHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-token entropy, entropy of the mean code distribution), both in nats.

        ``softmax_c(-τ‖z-c‖²) = Π_i Bernoulli(c_i; sigmoid(4τ z_i))`` because
        ``‖z-c‖² = ‖z‖² - 2 z·c + D`` for ``c ∈ {-1,1}^D``.
        """
        logit_ND = 4.0 * self.inv_temperature * z_BDHW.permute(0, 2, 3, 1).reshape(-1, self.bits)
        per_sample = _bernoulli_entropy(logit_ND).sum(dim=1).mean()
        g, d = self.entropy_groups, self.bits
        sizes = [d // g + (1 if i < d % g else 0) for i in range(g)]
        codebook = sum(exact_codebook_entropy(chunk) for chunk in logit_ND.split(sizes, dim=1))
        return per_sample, codebook


def exact_codebook_entropy(logit_ND: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``mean_n q(c | z_n)`` over all ``2^D`` codes, where ``q`` is the
    product of Bernoullis ``sigmoid(logit_ND)``. Cost ``O(N · 2^D · D)``."""
    bits = logit_ND.shape[1]
    k_K = torch.arange(2**bits, device=logit_ND.device)
    on_KD = ((k_K[:, None] // bit_weights(bits, k_K.device)[None, :]) % 2).float()
    logq_NK = F.logsigmoid(logit_ND) @ on_KD.T + F.logsigmoid(-logit_ND) @ (1.0 - on_KD).T
    # log mean_n q = logsumexp_n - log N
    logavg_K = torch.logsumexp(logq_NK, dim=0) - math.log(logq_NK.shape[0])
    return -(logavg_K.exp() * logavg_K).sum()

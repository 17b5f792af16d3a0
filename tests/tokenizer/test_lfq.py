import math

import torch

from unif2ace.tokenizer.lfq import LFQ, bits_to_codes, codes_to_bits


def test_quantisation_is_sign_and_index_is_binary_number():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 4, 4, generator=g)
    out = LFQ(5)(z)
    q = out.quantized_BDHW
    assert torch.equal(q, torch.where(z > 0, 1.0, -1.0))
    # index by the definition, computed independently with Python ints (channel 0 = MSB)
    for b, i, j in [(0, 0, 0), (1, 2, 3), (2, 3, 1)]:
        bits = "".join("1" if float(z[b, d, i, j]) > 0 else "0" for d in range(5))
        assert int(out.codes_BHW[b, i, j]) == int(bits, 2)
    assert out.codes_BHW.dtype == torch.long


def test_codebook_size_and_bijection():
    lfq = LFQ(6)
    assert lfq.codebook_size == 64
    codes = torch.arange(64).view(1, 8, 8)
    bits = codes_to_bits(codes, 6)
    assert set(bits.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(bits_to_codes(bits), codes)
    assert torch.equal(lfq(bits).codes_BHW, codes)


def test_straight_through_gradient_is_identity():
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    LFQ(4)(z).quantized_BDHW.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_entropies_match_bruteforce_softmax_over_codes():
    g = torch.Generator().manual_seed(1)
    bits, tau = 4, 0.7
    z = torch.randn(2, bits, 3, 3, generator=g)
    lfq = LFQ(bits, inv_temperature=tau)
    per_sample, codebook = lfq.entropies(z)
    # brute force: softmax over all 2^D codes of -tau * ||z - c||^2
    codes_K = torch.arange(2**bits).view(1, -1, 1)
    c_KD = codes_to_bits(codes_K, bits)[0, :, :, 0].T
    z_ND = z.permute(0, 2, 3, 1).reshape(-1, bits)
    p_NK = torch.softmax(-tau * torch.cdist(z_ND, c_KD) ** 2, dim=1)
    h_sample = -(p_NK * p_NK.log()).sum(1).mean()
    avg = p_NK.mean(0)
    h_code = -(avg * avg.log()).sum()
    assert torch.allclose(per_sample, h_sample, atol=1e-5)
    assert torch.allclose(codebook, h_code, atol=1e-5)
    out = lfq(z)
    assert torch.allclose(out.entropy_loss, h_sample - h_code, atol=1e-5)
    assert torch.allclose(out.commit_loss, (z - torch.where(z > 0, 1.0, -1.0)).pow(2).mean())


def test_codebook_entropy_bounds():
    lfq = LFQ(3)
    # large |z| spread over all 8 codes -> per-sample ~0, codebook ~log 8
    codes = torch.arange(8).view(1, 2, 4)
    z = 20 * codes_to_bits(codes, 3)
    ps, cb = lfq.entropies(z)
    assert float(ps) < 1e-6 and math.isclose(float(cb), math.log(8), rel_tol=1e-5)
    # grouped (factorised) entropies upper-bound the exact joint entropy; groups = bits is the
    # sum of per-bit marginal entropies
    z2 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    exact = LFQ(4).entropies(z2)[1]
    two = LFQ(4, entropy_groups=2).entropies(z2)[1]
    per_bit = LFQ(4, entropy_groups=4).entropies(z2)[1]
    p_D = torch.sigmoid(4 * z2.permute(0, 2, 3, 1).reshape(-1, 4)).mean(0)
    marginal = -(p_D * p_D.log() + (1 - p_D) * (1 - p_D).log()).sum()
    assert float(exact) <= float(two) + 1e-6 <= float(per_bit) + 2e-6
    assert torch.allclose(per_bit, marginal, atol=1e-5)

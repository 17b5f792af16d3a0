"""Masked (absorbing) discrete diffusion over image codes, independent of the network.

Modules (import the one you need; nothing happens at import time):
  schedules   masking schedules gamma(t) behind a registry (cosine, linear, square, cubic, sqrt)
  corruption  forward process: sample t, mask codes -> ``Corruption``
  losses      D3Diff = masked-generative loss + alpha * SEDD score entropy -> ``LossOutput``
  samplers    MaskGIT confidence sampler and MDLM ancestral sampler -> ``SamplerOutput``

Everything works in image-code space: codes in [0, K) and an integer ``mask_token`` >= K given
by the caller (the vocabulary layout is owned by ``unif2ace.vocab``).
"""

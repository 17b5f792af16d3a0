"""Image denoiser for the samplers, with the prompt computed once (prompt cache).

Shape legend: B prompts, R rows (B, or 2B with the unconditional half), P prefix length,
N image positions, K codebook size, V vocabulary.

The samplers (``unif2ace.diffusion``) call ``denoiser(codes_RN, noise_level_R) ->
logits_RNK``: codes in [0, K) are known, any value >= K is masked, and the logits cover the K
image codes only. With guidance the sampler passes 2B rows (conditional first, then
unconditional) and combines the logits itself.

Generation sequence (Show-o, NOTES.md §1): ``<|t2i|> bos prompt eos <|soi|> image <|eoi|>``,
prompts left-padded so image positions align. Why caching is exact: the prompt rows are
causal text rows that never see the image; the sequence-level router pools only the prompt
and the noise expert injects only from the first image position on (see
``moe_sequence``), so the prompt's keys/values and routing do not depend on the image or the
noise level and are computed once; each step runs only the N image positions (image rows do
not see ``<|eoi|>``, so it is left out of the cached steps).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..vocab import Modality, Task, VocabLayout
from .cache import ModelCache
from .transformer import UnifiedTransformer


def t2i_prefix(layout: VocabLayout, prompt: list[int]) -> list[int]:
    """``<|t2i|> bos prompt eos <|soi|>`` for one prompt of text ids."""
    return [layout.t2i_id, layout.bos_id, *prompt, layout.eos_id, layout.soi_id]


def left_pad(rows: list[list[int]], pad_id: int, modality: list[list[int]] | None = None):
    """Left-pad rows to one length. Returns (ids_BP, modality_BP); modality defaults TEXT."""
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), pad_id, dtype=torch.long)
    mod = torch.full((len(rows), P), int(Modality.PAD), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, P - len(r) :] = torch.tensor(r)
            m = modality[i] if modality is not None else [int(Modality.TEXT)] * len(r)
            mod[i, P - len(r) :] = torch.tensor(m)
    return ids, mod


def prompt_lists(prompts, layout: VocabLayout) -> list[list[int]]:
    """Prompts as lists of text ids (a padded tensor loses its ``pad_id`` entries)."""
    if isinstance(prompts, torch.Tensor):
        return [[t for t in row if t != layout.pad_id] for row in prompts.tolist()]
    return [list(p) for p in prompts]


class ImageDenoiser:
    """Callable ``(codes_RN, noise_level_R) -> logits_RNK``; see the module docstring."""

    def __init__(self, model, layout, prefix_ids_RP, prefix_mod_RP, n_cond: int, use_cache: bool):
        self.model, self.layout = model, layout
        self.prefix_ids, self.prefix_mod = prefix_ids_RP, prefix_mod_RP
        self.n_cond, self.use_cache = n_cond, use_cache
        self.cache: ModelCache | None = None
        K = layout.codebook_size
        self.vocab_slice = (layout.image_offset, layout.image_offset + K)

    def _rows(self, n: int) -> int:
        R = self.prefix_ids.shape[0]
        if n not in (R, self.n_cond):
            raise ValueError(f"denoiser built for {self.n_cond} prompts ({R} rows), got {n} rows")
        return n

    def _image_ids(self, codes_RN: torch.Tensor) -> torch.Tensor:
        K = self.layout.codebook_size
        masked = (codes_RN >= K) | (codes_RN < 0)
        ids = self.layout.codes_to_ids(codes_RN.clamp(0, K - 1))
        return torch.where(masked, torch.full_like(ids, self.layout.mask_id), ids)

    @torch.no_grad()
    def __call__(self, codes_RN: torch.Tensor, noise_level_R: torch.Tensor | None):
        n = self._rows(codes_RN.shape[0])
        img = self._image_ids(codes_RN.to(self.prefix_ids.device))
        N = img.shape[1]
        task = torch.full((n,), int(Task.T2I), dtype=torch.long, device=img.device)
        img_mod = torch.full_like(img, int(Modality.IMAGE))
        if not self.use_cache:
            eoi = torch.full((n, 1), self.layout.eoi_id, dtype=torch.long, device=img.device)
            ids = torch.cat([self.prefix_ids[:n], img, eoi], 1)
            mod = torch.cat([self.prefix_mod[:n], img_mod, torch.ones_like(eoi)], 1)
            out = self.model(
                ids, mod, task, noise_level_R, vocab_slice=self.vocab_slice, router_stats=False
            )
            P = self.prefix_ids.shape[1]
            return out.logits_BTV[:, P : P + N].float()
        if self.cache is None:
            self._fill_cache()
        cache = self.cache if n == self.prefix_ids.shape[0] else self.cache.rows(n)
        out = self.model(
            img,
            img_mod,
            task,
            noise_level_R,
            cache=cache,
            commit=False,
            vocab_slice=self.vocab_slice,
            router_stats=False,
        )
        return out.logits_BTV.float()

    def _fill_cache(self) -> None:
        """Run the prefix once, keeping its keys/values and sequence routing."""
        R = self.prefix_ids.shape[0]
        self.cache = ModelCache.empty(len(self.model.layers))
        task = torch.full((R,), int(Task.T2I), dtype=torch.long, device=self.prefix_ids.device)
        self.model(
            self.prefix_ids,
            self.prefix_mod,
            task,
            cache=self.cache,
            commit=True,
            last_only=True,
            vocab_slice=(0, 1),
            router_stats=False,
        )


def make_image_denoiser(
    model: UnifiedTransformer,
    layout: VocabLayout,
    prompt_ids: list[list[int]] | torch.Tensor,
    use_cache: bool = True,
    with_uncond: bool = False,
    uncond_prompt: list[int] | None = None,
) -> ImageDenoiser:
    """Denoiser for the samplers over B prompts (2B rows with ``with_uncond``).

    Args:
        model: the network.
        layout: vocabulary layout.
        prompt_ids: B prompts of text ids (lists, or a tensor padded with ``layout.pad_id``).
        use_cache: compute the prefix once (exactly equal to the uncached path).
        with_uncond: add B unconditional rows (the empty prompt, as in the 10% prompt
            dropout of training) after the conditional ones, for classifier-free guidance.
        uncond_prompt: text ids of the unconditional prompt (default: empty).
    """
    prompts = prompt_lists(prompt_ids, layout)
    if not prompts:
        raise UserError("no prompts given; pass at least one prompt")
    rows = [t2i_prefix(layout, p) for p in prompts]
    if with_uncond:
        rows += [t2i_prefix(layout, list(uncond_prompt or []))] * len(prompts)
    ids, mod = left_pad(rows, layout.pad_id)
    dev = model.embed_tokens.weight.device
    return ImageDenoiser(model, layout, ids.to(dev), mod.to(dev), len(prompts), use_cache)

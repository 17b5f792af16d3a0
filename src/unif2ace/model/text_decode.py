"""Autoregressive text decoding (captions, VQA) with a KV cache, batched with left padding.

Shape legend: B rows, N image positions, P prefix length, V vocabulary, S steps.

Understanding sequence (Show-o, NOTES.md §1): ``<|mmu|> <|soi|> image <|eoi|> bos question``,
then the answer tokens up to ``eos``. Rows are left-padded; rotary positions skip pads, so a
row's result does not depend on its padding. A finished row keeps receiving pad positions
(invisible to everything), identically in the cached and uncached paths. Sampling is
restricted to text ids and ``eos``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import UserError
from ..vocab import Modality, Task, VocabLayout
from .cache import ModelCache
from .denoiser import left_pad
from .transformer import UnifiedTransformer


@dataclass
class TextGeneration:
    """Result of :func:`generate_text`.

    Attributes:
        tokens: generated text ids per row, without the final ``eos``.
        finished: whether each row stopped on ``eos`` (else it hit ``max_new_tokens``).
        logits_BSV: per-step logits over ``[0, eos]`` (only with ``return_logits``).
    """

    tokens: list[list[int]]
    finished: list[bool]
    logits_BSV: torch.Tensor | None = None


def mmu_prefix(layout: VocabLayout, codes: list[int], question: list[int] | None):
    """(ids, modality ids) of ``<|mmu|> <|soi|> image <|eoi|> bos question`` (question None:
    the image part alone, ``<|mmu|> <|soi|> image <|eoi|>``)."""
    T, I = int(Modality.TEXT), int(Modality.IMAGE)
    img = [c + layout.image_offset for c in codes]
    ids = [layout.mmu_id, layout.soi_id, *img, layout.eoi_id]
    mod = [T, T] + [I] * len(img) + [T]
    if question is not None:
        ids += [layout.bos_id, *question]
        mod += [T] * (1 + len(question))
    return ids, mod


def mmu_batch(model: UnifiedTransformer, layout: VocabLayout, image_codes, texts: list[list[int]]):
    """(ids_BT, modality_BT, task_B) on the model's device: each image's
    :func:`mmu_prefix` with its text, left-padded to one length."""
    codes = image_codes.tolist() if isinstance(image_codes, torch.Tensor) else image_codes
    pref = [mmu_prefix(layout, c, t) for c, t in zip(codes, texts, strict=True)]
    ids, mod = left_pad([p[0] for p in pref], layout.pad_id, [p[1] for p in pref])
    dev = model.embed_tokens.weight.device
    task = torch.full((ids.shape[0],), int(Task.MMU), dtype=torch.long, device=dev)
    return ids.to(dev), mod.to(dev), task


def sample_next(
    logits_BV: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token per row: greedy at temperature 0, else top-k / top-p (nucleus) sampling."""
    if temperature <= 0:
        return logits_BV.argmax(-1)
    logits = logits_BV.float() / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_l, order = logits.sort(dim=-1, descending=True)
        cum = sorted_l.softmax(-1).cumsum(-1)
        drop = cum - sorted_l.softmax(-1) >= top_p  # keep the smallest set reaching top_p
        sorted_l = sorted_l.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_l)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _shared_prefix_forward(model, layout, codes, encoder_feats, index, texts, **kw):
    """Each image's ``<|mmu|> <|soi|> image <|eoi|>`` once into a cache, the cache copied to
    the rows (row b continues image ``index[b]``), then every row's ``bos text`` (left-padded;
    pads are invisible and skip rotary positions). Only the images some row asks about are
    run. Returns (output of the text forward, its ids_BT, task_B, the rows' cache)."""
    used = sorted(set(index))
    if len(used) < len(codes):  # a slice of the rows about many images: run only theirs
        codes = [codes[i] for i in used]
        if encoder_feats is not None:
            sel = torch.tensor(used, device=next(iter(encoder_feats.values())).device)
            encoder_feats = {k: v.index_select(0, sel) for k, v in encoder_feats.items()}
        where = {i: k for k, i in enumerate(used)}
        index = [where[i] for i in index]
    cache = ModelCache.empty(len(model.layers))
    ids, mod, task = mmu_batch(model, layout, codes, [None] * len(codes))
    pre = dict(kw, last_only=True)
    model(ids, mod, task, encoder_feats=encoder_feats, cache=cache, **pre)
    dev = ids.device
    cache = cache.select(torch.tensor(index, device=dev))
    ids, mod = left_pad([[layout.bos_id, *t] for t in texts], layout.pad_id)
    ids, mod = ids.to(dev), mod.to(dev)
    task = torch.full((len(index),), int(Task.MMU), dtype=torch.long, device=dev)
    return model(ids, mod, task, cache=cache, **kw), ids, task, cache


def _check_index(image_index, n_images: int, n_rows: int) -> list[int]:
    """``image_index`` as ints (None: row b asks about image b), validated."""
    index = list(range(n_images)) if image_index is None else [int(i) for i in image_index]
    if len(index) != n_rows or any(not 0 <= i < n_images for i in index):
        raise UserError(
            f"{n_rows} questions need one image index each in [0, {n_images}); got {len(index)}"
        )
    return index


@torch.no_grad()
def generate_text(
    model: UnifiedTransformer,
    layout: VocabLayout,
    image_codes: torch.Tensor | list[list[int]],
    questions: list[list[int]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    encoder_feats: dict[str, torch.Tensor] | None = None,
    use_cache: bool = True,
    return_logits: bool = False,
    no_repeat_ngram: int = 0,
    image_index: Sequence[int] | torch.Tensor | None = None,
) -> TextGeneration:
    """Caption / answer B images.

    Args:
        image_codes: codes_UN in [0, K) (or lists), one per image.
        questions: text ids per row (empty list for a plain caption).
        encoder_feats: features for the MMU sequence experts (``model.encode_images``), one
            per image.
        use_cache: KV cache (each step runs one position) or recompute the whole sequence.
        no_repeat_ngram: n > 0 forbids any token that would repeat an n-gram already in the
            row's generated text (greedy decoding otherwise loops on a sentence); 0: off.
        image_index: the image each row asks about (default: row b, image b). Several
            questions about one image share its prefix ``<|mmu|> <|soi|> image <|eoi|>``:
            with the cache it is computed once per image and copied to its rows (the text
            after it is causal and the sequence router pools the image positions only, so
            this is the per-row computation, reordered).
    """
    if no_repeat_ngram < 0:
        raise UserError(f"no_repeat_ngram must be >= 0, got {no_repeat_ngram}")
    codes = image_codes.tolist() if isinstance(image_codes, torch.Tensor) else image_codes
    index = _check_index(image_index, len(codes), len(questions))
    vs = (0, layout.eos_id + 1)
    kw = dict(last_only=True, vocab_slice=vs, router_stats=False)
    if use_cache:
        out, ids, task, cache = _shared_prefix_forward(
            model, layout, codes, encoder_feats, index, questions, **kw
        )
    else:
        cache = None
        if encoder_feats is not None:
            at = torch.tensor(index, device=next(iter(encoder_feats.values())).device)
            encoder_feats = {k: v.index_select(0, at) for k, v in encoder_feats.items()}
        ids, mod, task = mmu_batch(model, layout, [codes[i] for i in index], questions)
        out = model(ids, mod, task, encoder_feats=encoder_feats, **kw)
    dev, B = ids.device, ids.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    toks: list[torch.Tensor] = []
    rows: list[list[int]] = [[] for _ in range(B)]  # generated ids on the host (no_repeat_ngram)
    all_logits: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        logits = text_logits(out.logits_BTV[:, -1], layout)
        if no_repeat_ngram and len(toks) >= no_repeat_ngram - 1:
            _ban_repeats(logits, rows, no_repeat_ngram)
        all_logits.append(logits)
        nxt = sample_next(logits, temperature, top_k, top_p, generator)
        nxt = torch.where(done, torch.full_like(nxt, layout.pad_id), nxt)
        toks.append(nxt)
        if no_repeat_ngram:
            for row, t in zip(rows, nxt.tolist(), strict=True):
                row.append(t)
        done = done | (nxt == layout.eos_id)
        if bool(done.all()) or len(toks) == max_new_tokens:
            break
        step_mod = torch.where(done, int(Modality.PAD), int(Modality.TEXT))
        step_mod = torch.where(nxt == layout.eos_id, int(Modality.TEXT), step_mod)[:, None]
        if use_cache:
            out = model(nxt[:, None], step_mod, task, cache=cache, **kw)
        else:
            ids = torch.cat([ids, nxt[:, None]], 1)
            mod = torch.cat([mod, step_mod], 1)
            out = model(ids, mod, task, encoder_feats=encoder_feats, **kw)
    return _collect(toks, layout, all_logits if return_logits else None)


def text_logits(logits_BTV: torch.Tensor, layout: VocabLayout) -> torch.Tensor:
    """Logits over what an answer may contain: the text vocabulary and eos (the columns
    ``[0, eos]``), other special tokens at -inf. Decoding and answer scoring share it."""
    out = logits_BTV[..., : layout.eos_id + 1].float().clone()
    out[..., layout.special_offset : layout.eos_id] = float("-inf")
    return out


@torch.no_grad()
def answer_logprob(
    model: UnifiedTransformer,
    layout: VocabLayout,
    image_codes: torch.Tensor | list[list[int]],
    questions: list[list[int]],
    answers: list[list[int]],
    encoder_feats: dict[str, torch.Tensor] | None = None,
    image_index: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """log P(answer ids | image, question) per row, teacher-forced in one left-padded forward
    over ``<|mmu|> <|soi|> image <|eoi|> bos question answer``: the sum of each answer token's
    log-probability (:func:`text_logits`) given everything before it. With ``image_index``
    (the image of each row, as :func:`generate_text`), each image's prefix runs once and the
    rows continue from a copy of its cache."""
    if any(not a for a in answers):
        raise UserError("empty answer; give the answer ids to score")
    texts = [q + a for q, a in zip(questions, answers, strict=True)]
    vs = (0, layout.eos_id + 1)
    if image_index is None:
        ids, mod, task = mmu_batch(model, layout, image_codes, texts)
        out = model(ids, mod, task, encoder_feats=encoder_feats, vocab_slice=vs,
                    router_stats=False)  # fmt: skip
    else:
        codes = image_codes.tolist() if isinstance(image_codes, torch.Tensor) else image_codes
        index = _check_index(image_index, len(codes), len(texts))
        out, ids, _, _ = _shared_prefix_forward(
            model, layout, codes, encoder_feats, index, texts, vocab_slice=vs, router_stats=False
        )
    dev = ids.device
    lp = text_logits(out.logits_BTV, layout).log_softmax(-1)
    T = ids.shape[1]
    res = []
    for b, a in enumerate(answers):
        pos = torch.arange(T - 1 - len(a), T - 1, device=dev)  # positions predicting a
        res.append(lp[b, pos, torch.tensor(a, device=dev)].sum())
    return torch.stack(res).cpu()


def repeat_bans(row: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``row``."""
    if n == 1:
        return set(row)
    tail = tuple(row[len(row) - n + 1 :])
    return {row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i : i + n - 1]) == tail}


def _ban_repeats(logits_BV: torch.Tensor, rows: list[list[int]], n: int) -> None:
    for b, row in enumerate(rows):
        bans = repeat_bans(row, n)
        if bans:
            logits_BV[b, list(bans)] = float("-inf")


def _collect(toks, layout: VocabLayout, logits) -> TextGeneration:
    seq = torch.stack(toks, 1).tolist()
    tokens, finished = [], []
    for row in seq:
        stop = row.index(layout.eos_id) if layout.eos_id in row else len(row)
        tokens.append(row[:stop])
        finished.append(stop < len(row))
    return TextGeneration(tokens, finished, torch.stack(logits, 1) if logits else None)

"""Sequence builders: token layouts of generation and understanding examples, and batching.

Layouts (Show-o, Xie et al. 2024, Sec. 3.1 "Unified prompting"; UniF²ace NOTES §1)::

    generation (T2I):        [pad…] <|t2i|> bos prompt eos <|soi|> codes <|eoi|>
    understanding (MMU):     <|mmu|> <|soi|> codes <|eoi|> bos question answer eos
    conversation (MMU):      <|mmu|> <|soi|> codes <|eoi|> bos q1 a1 eos bos q2 a2 eos …

Every id comes from :class:`~unif2ace.vocab.VocabLayout` (no offsets are computed here).

Per position a sequence carries:

* ``modality``: :class:`~unif2ace.vocab.Modality`. The codes are IMAGE (one bidirectional
  block for the omni-attention mask); the task token, bos, text, eos and the ``<|soi|>`` /
  ``<|eoi|>`` markers are TEXT (causal), padding is PAD (invisible). The model's prompt
  cache and text decoder build the same layout (tests compare them).
* ``loss_mask``: positions whose token is a *target*. MMU: answer (or caption) tokens and
  the closing eos; T2I: the image-code positions (the diffusion corruption decides which of
  them are masked and scored). With next-token prediction the logit at ``t-1`` predicts the
  token at ``t``, so a text loss uses ``loss_mask_BT[:, 1:]`` against ``logits_BTV[:, :-1]``.
  Padding is never a target.
* ``image_mask``: positions holding image codes (what the diffusion may replace by [MASK]).
* ``loss_weight`` (optional): a weight per position for its target's loss (1 where absent);
  a conversation gives each answer's tokens its turn's weight (answer balancing by loss).

Generation prompts can be left-padded to a fixed ``text_len`` (Show-o does the same) so the
image block sits at the same positions in every sequence — which lets the conditional and
the empty-prompt (classifier-free guidance) sequences share a batch without realignment.

Shape legend: B batch, T sequence length, H/W code grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..vocab import Modality, Task, VocabLayout

CAPTION_INSTRUCTION = "Describe this face in detail."


def encode_answer(tokenizer, answer: str) -> list[int]:
    """An answer's text ids as they follow their question in a VQA sequence: the answer with
    a leading space (the byte-level BPE makes the space its own token before "Yes"/"No", and
    merges it into others, " Black"). Training and answer scoring
    (:meth:`FacePipeline.answer_probability`) both read answers through this."""
    return tokenizer.encode(" " + answer)


@dataclass
class TokenSequence:
    """One unpadded example (lists of equal length)."""

    ids: list[int]
    modality: list[int]
    loss_mask: list[bool]
    image_mask: list[bool]
    task: Task
    prompt_dropped: bool = False
    loss_weight: list[float] | None = None  # per position; None: every target weighs 1

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class SequenceBatch:
    """A padded batch (right padding with ``<|pad|>``).

    Attributes:
        input_ids_BT: vocabulary ids (int64).
        modality_BT: :class:`Modality` ids (int64), PAD on padding.
        loss_mask_BT: target positions (bool); never True on padding.
        loss_weight_BT: weight of each position's target loss (float32; 1 where a sequence
            gives none, 0 on padding).
        image_mask_BT: image-code positions (bool).
        position_ids_BT: 0-based positions counting only non-pad tokens (int64; 0 on pads).
        task_B: :class:`Task` ids (int64).
        prompt_dropped_B: generation examples whose prompt was dropped for CFG (bool).
        lengths_B: number of non-pad tokens (int64).
    """

    input_ids_BT: torch.Tensor
    modality_BT: torch.Tensor
    loss_mask_BT: torch.Tensor
    loss_weight_BT: torch.Tensor
    image_mask_BT: torch.Tensor
    position_ids_BT: torch.Tensor
    task_B: torch.Tensor
    prompt_dropped_B: torch.Tensor
    lengths_B: torch.Tensor

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(**{k: v.to(device) for k, v in vars(self).items()})


@dataclass
class DecodedSequence:
    """A sequence parsed back into its parts (text ids without specials; flat codes)."""

    task: Task
    text_ids: list[int]  # T2I: the prompt; MMU: question followed by answer
    codes: torch.Tensor  # (N,) int64 image codes; [MASK] positions are -1
    target_text_ids: list[int] = field(default_factory=list)  # MMU answer (needs loss mask)

    def text(self, tokenizer) -> str:
        return tokenizer.decode(self.text_ids)


# --- validation --------------------------------------------------------------------------
def _text(layout: VocabLayout, ids: Sequence[int], what: str) -> list[int]:
    ids = [int(i) for i in ids]
    if any(i < 0 or i >= layout.text_vocab_size for i in ids):
        raise UserError(
            f"{what} ids must lie in [0, {layout.text_vocab_size}) (the text "
            "vocabulary); was the text tokenizer the one the layout was built for?"
        )
    return ids


def _image_ids(
    layout: VocabLayout, codes: torch.Tensor | Sequence[int] | None, num_tokens: int | None
) -> list[int]:
    """Codes (any shape) -> vocabulary ids; ``None`` -> ``num_tokens`` [MASK] ids."""
    if codes is None:
        if not num_tokens:
            raise UserError("give image codes or the number of image tokens")
        return [layout.mask_id] * num_tokens
    c = torch.as_tensor(codes, dtype=torch.long).flatten()
    if c.numel() == 0 or int(c.min()) < 0 or int(c.max()) >= layout.codebook_size:
        raise UserError(
            f"image codes must lie in [0, {layout.codebook_size}); was the image "
            "tokenizer the one the layout was built for?"
        )
    return layout.codes_to_ids(c).tolist()


# --- builders ----------------------------------------------------------------------------
def build_t2i(
    layout: VocabLayout,
    prompt_ids: Sequence[int],
    codes: torch.Tensor | Sequence[int] | None,
    num_image_tokens: int | None = None,
    text_len: int | None = None,
    prompt_dropped: bool = False,
) -> TokenSequence:
    """Generation example ``[pad…] <|t2i|> bos prompt eos <|soi|> codes <|eoi|>``.

    Args:
        prompt_ids: text ids of the prompt (empty for the unconditional CFG branch).
        codes: the image's codes (any shape, flattened row-major), or ``None`` for an
            all-[MASK] image of ``num_image_tokens`` positions (sampling).
        text_len: if given, the text part (task token to eos) is truncated/left-padded to
            exactly this many positions, so the image block starts at ``text_len + 1``.
    """
    prompt = _text(layout, prompt_ids, "prompt")
    if text_len is not None:
        if text_len < 3:
            raise UserError("text_len must be at least 3 (<|t2i|>, bos, eos)")
        prompt = prompt[: text_len - 3]
    text = [layout.t2i_id, layout.bos_id, *prompt, layout.eos_id]
    pads = [layout.pad_id] * ((text_len or len(text)) - len(text))
    image = _image_ids(layout, codes, num_image_tokens)
    ids = pads + text + [layout.soi_id, *image, layout.eoi_id]
    n_p, n_t, n_i = len(pads), len(text), len(image)
    modality = (
        [Modality.PAD] * n_p
        + [Modality.TEXT] * (n_t + 1)
        + [Modality.IMAGE] * n_i
        + [Modality.TEXT]
    )
    image_mask = [False] * (n_p + n_t + 1) + [True] * n_i + [False]
    return TokenSequence(
        ids, [int(m) for m in modality], list(image_mask), image_mask, Task.T2I, prompt_dropped
    )


def build_mmu(
    layout: VocabLayout,
    codes: torch.Tensor | Sequence[int],
    question_ids: Sequence[int],
    answer_ids: Sequence[int],
    max_text_len: int | None = None,
) -> TokenSequence:
    """Understanding example ``<|mmu|> <|soi|> codes <|eoi|> bos question answer eos``.

    Loss targets: the answer tokens and the closing eos. ``max_text_len`` caps
    ``bos question answer eos`` by truncating the answer (then the question).
    """
    return build_mmu_turns(layout, codes, [(question_ids, answer_ids)], max_text_len)


def build_mmu_turns(
    layout: VocabLayout,
    codes: torch.Tensor | Sequence[int],
    turns: Sequence[tuple[Sequence[int], Sequence[int]]],
    max_text_len: int | None = None,
    weights: Sequence[float] | None = None,
) -> TokenSequence:
    """A conversation about one image (LLaVA-style multi-turn VQA)::

        <|mmu|> <|soi|> codes <|eoi|> bos q1 a1 eos bos q2 a2 eos ...

    Every answer and its eos are targets; the image is encoded once for all the turns, and
    the first turn is exactly :func:`build_mmu`'s single-turn layout (what inference asks).
    ``max_text_len`` caps the text after ``<|eoi|>``: turns that do not fit are dropped, and
    a first turn longer than the cap is truncated (answer first, then question).
    ``weights`` (one per turn) weigh each answer's target tokens in the loss
    (``loss_weight``); None leaves every target at 1.
    """
    if not turns:
        raise UserError("a conversation needs at least one (question, answer) turn")
    if weights is not None and len(weights) != len(turns):
        raise UserError(f"{len(weights)} loss weights for {len(turns)} turns")
    image = _image_ids(layout, codes, None)
    ids = [layout.mmu_id, layout.soi_id, *image, layout.eoi_id]
    loss = [False] * len(ids)
    weight = [1.0] * len(ids)
    used = 0
    for k, (question_ids, answer_ids) in enumerate(turns):
        q = _text(layout, question_ids, "question")
        a = _text(layout, answer_ids, "answer")
        if max_text_len is not None:
            if k == 0:
                room = max(0, max_text_len - 2)
                q = q[:room]
                a = a[: max(0, room - len(q))]
            elif used + len(q) + len(a) + 2 > max_text_len:
                break
        ids += [layout.bos_id, *q, *a, layout.eos_id]
        loss += [False] * (1 + len(q)) + [True] * (len(a) + 1)
        w = 1.0 if weights is None else float(weights[k])
        weight += [1.0] * (1 + len(q)) + [w] * (len(a) + 1)
        used += len(q) + len(a) + 2
    n_i = len(image)
    modality = (
        [int(Modality.TEXT)] * 2 + [int(Modality.IMAGE)] * n_i + [int(Modality.TEXT)] * (used + 1)
    )
    image_mask = [False, False] + [True] * n_i + [False] * (used + 1)
    return TokenSequence(
        ids, modality, loss, image_mask, Task.MMU, loss_weight=None if weights is None else weight
    )


def build_caption(
    layout: VocabLayout,
    codes: torch.Tensor | Sequence[int],
    caption_ids: Sequence[int],
    instruction_ids: Sequence[int] = (),
    max_text_len: int | None = None,
) -> TokenSequence:
    """Captioning = understanding with an (optional) instruction as the question."""
    return build_mmu(layout, codes, instruction_ids, caption_ids, max_text_len)


def drop_prompt(
    prompt_ids: Sequence[int], drop_prob: float, generator: torch.Generator | None = None
) -> tuple[list[int], bool]:
    """Classifier-free-guidance hook: with probability ``drop_prob`` return an empty prompt.

    Show-o drops 10% of prompts during training; at sampling, the unconditional branch is
    ``build_t2i(layout, [], …)`` and logits mix as ``(1 + w)·cond − w·uncond``.
    """
    dropped = bool(torch.rand((), generator=generator) < drop_prob)
    return ([] if dropped else list(prompt_ids)), dropped


def build_t2i_with_dropout(
    layout: VocabLayout,
    prompt_ids: Sequence[int],
    codes: torch.Tensor | Sequence[int],
    drop_prob: float = 0.1,
    generator: torch.Generator | None = None,
    text_len: int | None = None,
) -> TokenSequence:
    """:func:`build_t2i` after :func:`drop_prompt` (training examples)."""
    prompt, dropped = drop_prompt(prompt_ids, drop_prob, generator)
    return build_t2i(layout, prompt, codes, text_len=text_len, prompt_dropped=dropped)


# --- batching ----------------------------------------------------------------------------
def collate(
    seqs: Sequence[TokenSequence], layout: VocabLayout, pad_to: int | None = None
) -> SequenceBatch:
    """Right-pad sequences to the longest (or ``pad_to``) and stack them."""
    if not seqs:
        raise UserError("cannot collate an empty list of sequences")
    t = max(len(s) for s in seqs)
    if pad_to is not None:
        if pad_to < t:
            raise UserError(f"pad_to={pad_to} is shorter than the longest sequence ({t})")
        t = pad_to
    b = len(seqs)
    ids = torch.full((b, t), layout.pad_id, dtype=torch.long)
    modality = torch.full((b, t), int(Modality.PAD), dtype=torch.long)
    loss = torch.zeros((b, t), dtype=torch.bool)
    weight = torch.ones((b, t), dtype=torch.float32)
    image = torch.zeros((b, t), dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = len(s)
        ids[i, :n] = torch.tensor(s.ids)
        modality[i, :n] = torch.tensor(s.modality)
        loss[i, :n] = torch.tensor(s.loss_mask)
        image[i, :n] = torch.tensor(s.image_mask)
        if s.loss_weight is not None:
            weight[i, :n] = torch.tensor(s.loss_weight, dtype=torch.float32)
    real = modality != int(Modality.PAD)
    loss &= real  # padding is never a target, whatever a builder said
    weight *= real
    positions = (real.long().cumsum(dim=1) - 1).clamp(min=0) * real.long()
    return SequenceBatch(
        input_ids_BT=ids,
        modality_BT=modality,
        loss_mask_BT=loss,
        loss_weight_BT=weight,
        image_mask_BT=image,
        position_ids_BT=positions,
        task_B=torch.tensor([int(s.task) for s in seqs], dtype=torch.long),
        prompt_dropped_B=torch.tensor([s.prompt_dropped for s in seqs], dtype=torch.bool),
        lengths_B=real.sum(dim=1),
    )


# --- decoding ----------------------------------------------------------------------------
def decode_sequence(
    layout: VocabLayout,
    ids: Sequence[int] | torch.Tensor,
    loss_mask: Sequence[bool] | torch.Tensor | None = None,
) -> DecodedSequence:
    """Parse a built (possibly padded) sequence back into task, text ids and codes.

    Image positions holding ``[MASK]`` decode to code -1. With ``loss_mask`` (MMU), the
    target text tokens are returned separately in ``target_text_ids``.
    """
    ids = [int(i) for i in torch.as_tensor(ids).tolist()]
    mask = [bool(m) for m in torch.as_tensor(loss_mask).tolist()] if loss_mask is not None else None
    if layout.t2i_id in ids:
        task = Task.T2I
    elif layout.mmu_id in ids:
        task = Task.MMU
    else:
        raise UserError("sequence has neither <|t2i|> nor <|mmu|>; not built by this module")
    soi, eoi = ids.index(layout.soi_id), ids.index(layout.eoi_id)
    bos, eos = ids.index(layout.bos_id), len(ids) - 1 - ids[::-1].index(layout.eos_id)
    image = torch.tensor(ids[soi + 1 : eoi], dtype=torch.long)
    codes = torch.where(image == layout.mask_id, -1, layout.ids_to_codes(image))
    specials = (layout.bos_id, layout.eos_id)  # inner ones separate the turns of a conversation
    text = [t for t in ids[bos + 1 : eos] if t not in specials]
    target = [
        ids[i]
        for i in range(bos + 1, eos)
        if mask is not None and mask[i] and ids[i] not in specials
    ]
    return DecodedSequence(task, text, codes, target)


def decode_batch(layout: VocabLayout, batch: SequenceBatch) -> list[DecodedSequence]:
    """:func:`decode_sequence` for every row of a batch."""
    return [
        decode_sequence(layout, batch.input_ids_BT[i], batch.loss_mask_BT[i])
        for i in range(batch.input_ids_BT.shape[0])
    ]


# --- examples from shard records ---------------------------------------------------------
def _pick(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(n, (), generator=generator))


def t2i_from_record(
    layout: VocabLayout,
    tokenizer,
    record: dict,
    codes: torch.Tensor | Sequence[int],
    generator: torch.Generator | None = None,
    drop_prob: float = 0.1,
    text_len: int | None = None,
) -> TokenSequence:
    """Generation example from a shard row: one of its prompts (or its caption), CFG dropout.

    ``tokenizer`` is a :class:`~unif2ace.tokenizer.text.TextTokenizer`; ``codes`` are the
    row's cached image codes.
    """
    texts = [p for p in (record.get("prompts") or []) if p] or [record.get("caption") or ""]
    prompt = tokenizer.encode(texts[_pick(len(texts), generator)])
    return build_t2i_with_dropout(layout, prompt, codes, drop_prob, generator, text_len)


def mmu_from_record(
    layout: VocabLayout,
    tokenizer,
    record: dict,
    codes: torch.Tensor | Sequence[int],
    generator: torch.Generator | None = None,
    caption_prob: float = 0.5,
    max_text_len: int | None = None,
    instruction: str = CAPTION_INSTRUCTION,
) -> TokenSequence:
    """Understanding example from a shard row: its caption (with ``instruction``) with
    probability ``caption_prob`` (always when it has no VQA), else one of its VQA pairs."""
    vqa = record.get("vqa") or []
    if not vqa or float(torch.rand((), generator=generator)) < caption_prob:
        return build_caption(
            layout,
            codes,
            tokenizer.encode(record.get("caption") or ""),
            tokenizer.encode(instruction),
            max_text_len,
        )
    qa = vqa[_pick(len(vqa), generator)]
    q, a = tokenizer.encode(qa["question"]), encode_answer(tokenizer, qa["answer"])
    return build_mmu(layout, codes, q, a, max_text_len)
